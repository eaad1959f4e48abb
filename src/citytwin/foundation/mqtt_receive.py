"""The MQTT ingest's chunked reader: paho's client reading the socket in chunks (:class:`_ReceiveClient`).

Split from :mod:`citytwin.foundation.mqtt`, which uses it for :class:`~citytwin.foundation.mqtt.MqttIngest`
(tests: ``tests/twin/test_mqtt_receive.py``, against paho's own reader).
"""

from __future__ import annotations

import contextlib
import socket
import ssl
from collections.abc import Callable, Sequence
from typing import Any, cast

import numpy as np
import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.exception import MalformedPacket

__all__ = ["_ReceiveClient"]


_PUBLISH_QOS1 = 0x32  # PUBLISH with QoS 1 (bits 1-2); the DUP (0x08) and RETAIN (0x01) flags masked out by 0xF6
_PUBACK_HEAD = 0x4002_0000  # a PUBACK packet as a big-endian 32-bit word: 0x40, remaining length 2, message id
_CHUNK = 1_048_576  # bytes read from the socket at once (at most)


class _ReceiveClient(mqtt.Client):
    """paho's client, reading the socket in chunks of up to :data:`_CHUNK` bytes instead of packet by packet.

    paho reads each packet with three or more ``recv`` calls (the command byte, the length bytes one by one, the
    rest) and decodes a PUBLISH through several copies of the payload, an ``MQTTMessage``, its MQTT v5
    ``Properties`` and the callback dispatch. Here every complete packet in the chunk is cut out of one buffer: a
    QoS 1 PUBLISH without properties whose topic is valid UTF-8 (what the broker forwards from devices) goes
    straight to ``fast(mid, topic, payload)`` with one copy of its payload; every other packet (CONNACK, SUBACK,
    PINGRESP, DISCONNECT, QoS 0 or 2, properties such as a topic alias, a topic that is not UTF-8) is handed to
    paho's own handler exactly as paho's reader would hand it. A packet cut by the chunk's end stays in the
    buffer for the next read; a new connection starts with an empty buffer.

    :meth:`ack_many` acknowledges many QoS 1 messages with one queued write (the same PUBACK bytes, in order)
    instead of one queued packet, socket-pair wake-up and write per message.
    """

    fast: Callable[[int, str, bytes], None] | None = None

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self._rbuf = bytearray()
        self._chunk = bytearray(_CHUNK)

    def reconnect(self) -> MQTTErrorCode:
        self._rbuf.clear()  # what was left of the old connection's stream is not the new one's
        return super().reconnect()

    def wake(self) -> None:
        """Wake the network loop from its ``select`` (from another thread), as paho's own queued writes wake it."""
        if self._sockpairW is not None:  # (full: a wake-up is pending anyway; closed: a new loop follows)
            with contextlib.suppress(OSError):
                self._sockpairW.send(b"0")

    def ack_many(self, mids: Sequence[int]) -> MQTTErrorCode:
        """Send the PUBACKs of QoS 1 messages ``mids`` (in this order) as one write."""
        if not mids:
            return MQTTErrorCode.MQTT_ERR_SUCCESS
        words = np.asarray(mids, dtype=np.uint32) | np.uint32(_PUBACK_HEAD)
        return self._packet_queue(mqtt.PUBACK, words.astype(">u4").tobytes(), 0, 1)

    def _packet_read(self) -> MQTTErrorCode:
        sock = self._sock
        if sock is None:
            return MQTTErrorCode.MQTT_ERR_NO_CONN
        try:
            k = cast(socket.socket, sock).recv_into(self._chunk)  # (TLS: an ssl.SSLSocket, which has it too)
        except (BlockingIOError, ssl.SSLWantReadError):
            return MQTTErrorCode.MQTT_ERR_AGAIN
        except ssl.SSLWantWriteError:
            self._call_socket_register_write()
            return MQTTErrorCode.MQTT_ERR_AGAIN
        except OSError as err:  # (TimeoutError included)
            self._easy_log(mqtt.MQTT_LOG_ERR, "failed to receive on socket: %s", err)
            return MQTTErrorCode.MQTT_ERR_CONN_LOST
        if k == 0:
            return MQTTErrorCode.MQTT_ERR_CONN_LOST
        buf = self._rbuf
        buf += memoryview(self._chunk)[:k]
        with self._msgtime_mutex:
            self._last_bytes_received = mqtt.time_func()
        try:
            rc, used = self._packets(buf)
        except BaseException:  # a callback raised: the connection is given up (a reconnect starts afresh)
            buf.clear()
            raise
        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS or self._sock is not sock:
            buf.clear()  # the connection ends: the rest of its bytes are not read
        else:
            del buf[:used]
        return rc

    def _packets(self, buf: bytearray) -> tuple[MQTTErrorCode, int]:
        """Handle the complete packets at the start of ``buf``: (return code, bytes used)."""
        n = len(buf)
        pos = 0
        v5 = self._protocol == mqtt.MQTTv5
        fast = self.fast
        with memoryview(buf) as mv:
            while n - pos >= 2:
                cmd = buf[pos]
                length, mult, i = 0, 1, pos + 1
                while True:  # the remaining length: 1 to 4 bytes, 7 bits each
                    if i >= n:
                        return MQTTErrorCode.MQTT_ERR_SUCCESS, pos
                    b = buf[i]
                    length += (b & 127) * mult
                    mult *= 128
                    i += 1
                    if b < 128:
                        break
                    if i - pos > 4:
                        return MQTTErrorCode.MQTT_ERR_PROTOCOL, pos
                end = i + length
                if end > n:
                    return MQTTErrorCode.MQTT_ERR_SUCCESS, pos
                if fast is not None and cmd & 0xF6 == _PUBLISH_QOS1 and length >= 5:
                    t = i + 2 + (buf[i] << 8 | buf[i + 1])  # the topic's end
                    at = t + 3 if v5 else t + 2  # the payload's start (after the message id and, in v5, an empty
                    if at <= end and (not v5 or buf[t + 2] == 0):  # property list)
                        try:
                            topic = str(mv[i + 2:t], "utf-8")
                        except UnicodeDecodeError:
                            pass
                        else:
                            fast(buf[t] << 8 | buf[t + 1], topic, bytes(mv[at:end]))
                            pos = end
                            continue
                rc = self._paho_packet(cmd, bytes(mv[pos + 1:i]), length, bytearray(mv[i:end]), mult)
                pos = end
                if rc != MQTTErrorCode.MQTT_ERR_SUCCESS or self._sock is None:
                    return rc, pos
        return MQTTErrorCode.MQTT_ERR_SUCCESS, pos

    def _paho_packet(self, cmd: int, counts: bytes, length: int, body: bytearray, mult: int) -> MQTTErrorCode:
        """One packet through paho's handlers, set up as paho's own reader sets it up."""
        self._in_packet = {"command": cmd, "have_remaining": 1, "remaining_count": list(counts),
                           "remaining_mult": mult, "remaining_length": length, "packet": body, "to_process": 0,
                           "pos": 0}
        try:
            rc = self._packet_handle()
        except MalformedPacket as exc:
            self._easy_log(mqtt.MQTT_LOG_DEBUG, "Received malformed packet: %s", exc)
            rc = MQTTErrorCode.MQTT_ERR_PROTOCOL
        self._in_packet = {"command": 0, "have_remaining": 0, "remaining_count": [], "remaining_mult": 1,
                           "remaining_length": 0, "packet": bytearray(b""), "to_process": 0, "pos": 0}
        return rc

