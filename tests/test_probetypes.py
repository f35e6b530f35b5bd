"""Typed probes render to the probe words they stand for."""

from __future__ import annotations

from rawprobe import Uprobe, Uretprobe, Usdt, parse_probe


def test_words() -> None:
    assert Uprobe("libc", "malloc", fetch={"size": "%di:u64"}).word == (
        "p libc:malloc size=%di:u64")
    assert Uretprobe("/bin/bash", "readline", fetch={"line": "+0($retval):string"},
                     name="typed").word == "r:typed /bin/bash:readline line=+0($retval):string"
    assert Usdt("/usr/bin/python3.11", "python", "function__entry",
                fetch={"fn": "$arg2:string"}).word == (
        "usdt /usr/bin/python3.11:python:function__entry fn=$arg2:string")
    assert Usdt("./app", None, "mark").word == "usdt ./app:mark"


def test_words_parse_back() -> None:
    spec = parse_probe(Uretprobe("libc", "malloc", fetch={"p": "$retval:x64"}).word)
    assert (spec.kind, spec.target, spec.location) == ("r", "libc", "malloc")
    assert [(a.name, a.type.name) for a in spec.fetchargs] == [("p", "x64")]
