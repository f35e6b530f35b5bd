"""A BPF ring buffer map, mapped into this process and waited on with epoll.

Layout of the mapping (kernel/bpf/ringbuf.c, ringbuf_map_mmap_kern): page 0 holds the consumer
position and is writable by user space; from page 1 on, read-only, the producer page (producer
position first), then the data area mapped twice in a row, so a record that wraps around the
end is contiguous in memory.
"""

from __future__ import annotations

import mmap
import select
import weakref

from .._errors import ClosedError

__all__ = ["RingMap"]



class RingMap:
    """The user-space side of one BPF ring buffer.

    Args:
        map_fd: File descriptor of a ``BPF_MAP_TYPE_RINGBUF`` map.
        data_size: The map's ``max_entries``: the size of the data area, a power of two.
    """

    def __init__(self, map_fd: int, data_size: int) -> None:
        page = mmap.PAGESIZE
        self.data_size = data_size
        self._mask = data_size - 1
        self._consumer = mmap.mmap(map_fd, page, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        try:
            self._producer = mmap.mmap(
                map_fd, page + 2 * data_size, mmap.MAP_SHARED, mmap.PROT_READ, offset=page
            )
        except BaseException:
            self._consumer.close()
            raise
        self._data_start = page
        # Positions are read and written as whole 64-bit words: struct.pack_into zeroes the
        # field before writing it byte by byte, and a producer reading the consumer position
        # in between sees the ring as full and drops a record it had room for.
        self._consumer_word = memoryview(self._consumer).cast("Q")
        self._producer_word = memoryview(self._producer)[:8].cast("Q")
        self._epoll = select.epoll()
        self._epoll.register(map_fd, select.EPOLLIN)
        self._finalizer = weakref.finalize(
            self, _close_all, self._epoll, self._producer, self._consumer,
            (self._consumer_word, self._producer_word),
        )
        self.closed = False

    def watch(self, fd: int) -> None:
        """Also wake :meth:`wait` when ``fd`` becomes readable (e.g. a pidfd at process exit)."""
        self._epoll.register(fd, select.EPOLLIN)

    def fileno(self) -> int:
        """The epoll descriptor: readable when records are waiting (for asyncio loops)."""
        return self._epoll.fileno()

    def wait(self, timeout: float | None) -> bool:
        """Block until the producer signals new data or ``timeout`` seconds pass.

        Returns:
            Whether data may be available (spurious wake-ups are possible).
        """
        if self.closed:
            raise ClosedError("ring buffer is closed")
        if self.pending():
            return True
        try:
            return bool(self._epoll.poll(-1 if timeout is None else timeout))
        except InterruptedError:
            return False

    def positions(self) -> tuple[int, int]:
        """The consumer and producer positions (bytes ever consumed and ever produced)."""
        return int(self._consumer_word[0]), int(self._producer_word[0])

    def pending(self) -> int:
        """Bytes between the consumer and producer positions."""
        return int(self._producer_word[0] - self._consumer_word[0])

    def read(self) -> bytes:
        """Copy out everything from the consumer position to the producer position.

        The copy is taken once, so the producer may go on writing behind it; the caller
        releases what it has read with :meth:`consume`.
        """
        consumer = self._consumer_word[0]
        producer = self._producer_word[0]
        if producer == consumer:
            return b""
        start = self._data_start + (consumer & self._mask)
        return self._producer[start : start + (producer - consumer)]

    def view(self) -> memoryview:
        """Everything from the consumer position to the producer position, in place (no
        copy: the data area is mapped twice in a row, so it is contiguous even across the
        end). Release the view before :meth:`close`; hand the space back with
        :meth:`consume`."""
        consumer = self._consumer_word[0]
        producer = self._producer_word[0]
        start = self._data_start + (consumer & self._mask)
        return memoryview(self._producer)[start : start + (producer - consumer)]

    def consume(self, count: int) -> None:
        """Advance the consumer position by ``count`` bytes, handing the space back to BPF."""
        if count:
            self._consumer_word[0] += count  # one aligned 64-bit store

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._finalizer()


def _close_all(epoll: select.epoll, producer: mmap.mmap, consumer: mmap.mmap,
               views: tuple[memoryview, ...]) -> None:
    epoll.close()
    for view in views:
        view.release()
    producer.close()
    consumer.close()
