"""The MQTT subscriber (`medloop ingest mqtt`): QoS 1, a persistent session and manual
acknowledgement, so that nothing is lost and nothing is doubled.

- The session is persistent (fixed client id, clean_session False): the broker keeps every message
  published while the ingester is away and delivers it when it is back.
- A message is acknowledged (PUBACK) only after the transaction holding its readings committed. A
  crash between the two makes the broker deliver it again; the deterministic reading ids turn that
  second delivery into a no-op.
- Messages are taken in micro-batches (up to `batch_size`, or whatever arrived within `max_wait`),
  run through the pipeline in one transaction, then acknowledged together.
- A payload can never stop the ingester: what cannot be parsed is dead-lettered with the raw text.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

import aiomqtt
import orjson
from sqlalchemy import Engine

from medloop.auth.models import Role
from medloop.auth.principal import Principal
from medloop.devices import payloads
from medloop.devices.broker import SUBSCRIPTION, serial_from_topic
from medloop.devices.deadletter import MESSAGE_FORMAT
from medloop.devices.ingest import IngestResult, Submitter, ingest_entries
from medloop.devices.pipeline import gc_paused
from medloop.devices.types import Item, Reason, Rejected
from medloop.store.engine import session_scope

log = logging.getLogger("medloop.devices.mqtt")

INGESTER_PRINCIPAL = Principal(
    None, "mqtt-ingester", frozenset({Role.DEVICE.value}), scope=None, source="mqtt"
)
MAX_RAW_TEXT = 64 * 1024


@dataclass(frozen=True)
class BrokerAddress:
    host: str
    port: int
    username: str | None
    password: str | None


def parse_broker_url(url: str) -> BrokerAddress:
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "tcp") or not parts.hostname:
        raise ValueError("broker URL must look like mqtt://[user:password@]host[:port]")
    return BrokerAddress(
        parts.hostname,
        parts.port or 1883,
        unquote(parts.username) if parts.username else None,
        unquote(parts.password) if parts.password else None,
    )


@dataclass(frozen=True)
class Message:
    topic: str
    payload: bytes


def _unparseable(index: int, msg: Message, serial: str | None, detail: str) -> Rejected:
    text = msg.payload[:MAX_RAW_TEXT].decode("utf-8", errors="replace")
    return Rejected(
        index, MESSAGE_FORMAT, {"topic": msg.topic, "text": text}, serial, Reason.MALFORMED, detail
    )


def entries_from_messages(messages: Sequence[Message]) -> list[Item | Rejected]:
    """Stage *parse* for MQTT: every reading of every message, numbered across the batch. The topic
    names the sending device: a reading that names another device is refused."""
    entries: list[Item | Rejected] = []
    for msg in messages:
        serial = serial_from_topic(msg.topic)
        index = len(entries)
        if serial is None:
            entries.append(_unparseable(index, msg, None, f"topic is not {SUBSCRIPTION}"))
            continue
        try:
            parsed = payloads.parse(orjson.loads(msg.payload), serial)
        except orjson.JSONDecodeError as exc:
            entries.append(_unparseable(index, msg, serial, f"message is not valid JSON: {exc}"))
            continue
        except payloads.PayloadError as exc:
            entries.append(_unparseable(index, msg, serial, str(exc)))
            continue
        except Exception as exc:  # a parser bug must not stop the ingester; keep the message
            entries.append(_unparseable(index, msg, serial, f"could not parse: {type(exc).__name__}"))
            continue
        for entry in parsed:
            entry.index = len(entries)
            if isinstance(entry, Item) and entry.device_serial != serial:
                entry = Rejected(
                    entry.index,
                    entry.format,
                    entry.raw,
                    entry.device_serial,
                    Reason.SERIAL_MISMATCH,
                    "the reading names another device than the topic it was published on",
                )
            entries.append(entry)
    return entries


def process(engine: Engine, messages: Sequence[Message]) -> IngestResult:
    """Run one batch of messages through the pipeline in one transaction."""
    with gc_paused(), session_scope(engine) as session:
        return ingest_entries(
            session, entries_from_messages(messages), channel="mqtt", submitter=Submitter(INGESTER_PRINCIPAL)
        )


class Ingester:
    def __init__(
        self,
        engine: Engine,
        broker_url: str,
        *,
        client_id: str = "medloop-ingester",
        batch_size: int = 1000,
        max_wait: float = 0.05,
    ) -> None:
        self.engine, self.address = engine, parse_broker_url(broker_url)
        self.client_id, self.batch_size, self.max_wait = client_id, batch_size, max_wait
        self.stored = 0
        self._subscribed = False
        self.subscribed = asyncio.Event()  # set once the first subscription is in place

    def _client(self) -> aiomqtt.Client:
        client = aiomqtt.Client(
            self.address.host,
            self.address.port,
            username=self.address.username,
            password=self.address.password,
            identifier=self.client_id,
            clean_session=False,
            keepalive=30,
        )
        # aiomqtt does not expose manual acknowledgement; paho (underneath) does. It must be on before
        # connecting, or messages the broker kept for us would be acknowledged before they are stored.
        client._client.manual_ack_set(True)
        return client

    async def _batch(self, messages: aiomqtt.client.MessagesIterator) -> list[aiomqtt.Message]:
        batch = [await anext(messages)]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_wait
        while len(batch) < self.batch_size:
            if len(messages) == 0:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(anext(messages), remaining))
                except TimeoutError:
                    break
            else:
                batch.append(await anext(messages))
        return batch

    async def _consume(self) -> None:
        client = self._client()
        async with client:
            await client.subscribe(SUBSCRIPTION, qos=1)
            self._subscribed = True
            self.subscribed.set()
            log.info("mqtt ingester subscribed", extra={"topic": SUBSCRIPTION, "client_id": self.client_id})
            while True:
                batch = await self._batch(client.messages)
                msgs = [
                    Message(
                        m.topic.value,
                        m.payload if isinstance(m.payload, bytes) else str(m.payload or "").encode(),
                    )
                    for m in batch
                ]
                result = await asyncio.to_thread(process, self.engine, msgs)
                for m in batch:
                    client._client.ack(m.mid, m.qos)
                self.stored += result.summary()["stored"]
                log.info("mqtt batch", extra={"messages": len(batch), **result.summary()})

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Consume until `stop` is set, reconnecting (with back-off) whenever the broker goes away."""
        stop = stop or asyncio.Event()
        delay = 0.2
        while not stop.is_set():
            consume = asyncio.create_task(self._consume())
            stopped = asyncio.create_task(stop.wait())
            done, _ = await asyncio.wait({consume, stopped}, return_when=asyncio.FIRST_COMPLETED)
            if stopped in done:
                consume.cancel()
                await asyncio.gather(consume, return_exceptions=True)
                return
            stopped.cancel()
            exc = consume.exception()
            log.warning("mqtt connection lost; reconnecting", extra={"error_type": type(exc).__name__})
            if self._subscribed:
                delay, self._subscribed = 0.2, False
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
