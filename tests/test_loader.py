"""What a preloaded BPF object must be to serve a run (rawprobe._bpf.loader), and what the
command line guesses a plain stream will want."""

from __future__ import annotations

from rawprobe._bpf.loader import SHRINKABLE, LoadSpec, expected_spec, settings


def spec(**changes: object) -> LoadSpec:
    base = LoadSpec({"rp_entry_multi"}, 1, 1, 8 << 20, SHRINKABLE,
                    settings(follow=False, filters=False, aggregates=False))
    return base.replace(**changes)


def test_a_preload_serves_runs_it_covers() -> None:
    loaded = spec(programs=frozenset({"rp_entry_multi", "rp_return_multi"}), probes=64,
                  stats=64)
    assert loaded.satisfies(spec())
    assert loaded.satisfies(spec(programs=frozenset({"rp_return_multi"}), probes=64))
    assert not loaded.satisfies(spec(probes=65))  # too small a map
    assert not loaded.satisfies(spec(programs=frozenset({"rp_entry_multi_sleepable"})))
    assert not loaded.satisfies(spec(ring_size=16 << 20))
    assert not loaded.satisfies(spec(shrunk=frozenset()))  # an aggregating run
    assert not loaded.satisfies(spec(settings=settings(follow=False, filters=True,
                                                       aggregates=False)))


def test_the_guess_from_the_words() -> None:
    guess = expected_spec(["p:/bin/true:main a=%di:s32", "r:/bin/true:main",
                           "p:x/y:f s=+0(%di):string"], ring_size=1 << 20, filters=False)
    kinds = {name.replace("_multi", "") for name in guess.programs}
    assert kinds == {"rp_entry", "rp_return", "rp_entry_sleepable"}
    assert guess.ring_size == 1 << 20 and guess.probes == 64
