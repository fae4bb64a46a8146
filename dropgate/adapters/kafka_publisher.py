"""Publishing state events to Kafka, with every delivery accounted for.

One confluent-kafka producer per process, reused across warm Lambda invocations (connecting
is the expensive part). The producer is idempotent with ``acks=all``, so a retry inside the
client never duplicates or reorders a key's events, and ``delivery.timeout.ms`` stays below
the function's timeout. A file counts as published only when every delivery report came back
without error; otherwise :class:`PublishError` fails the invocation and the file is retried.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from dropgate.publishing import OutMessage, PositionSink, PublishError, PublishReport, TopicError


class _Deliveries:
    """Failed deliveries of one publish call; never shared between files.

    The producer reports failures only (``delivery.report.only.error``): once ``flush()`` has
    emptied the queue, every event it did not report as failed was acknowledged.
    """

    __slots__ = ("failed", "first_error")

    def __init__(self) -> None:
        self.failed = 0
        self.first_error: KafkaError | None = None

    def __call__(self, error: KafkaError | None, message: Any) -> None:
        if error is not None:  # only failures are reported, but a success must never count as one
            self.failure(error)

    def failure(self, error: KafkaError) -> None:
        self.failed += 1
        if self.first_error is None:
            self.first_error = error


class _Reports(_Deliveries):
    """:class:`_Deliveries` of a producer that reports every event: each success's key, partition
    and offset is passed on to ``positions``. It runs once per event, on the publishing thread, so
    it does nothing else (a million reports cost a file about a second of this one thread)."""

    __slots__ = ("delivered",)

    def __init__(self, positions: PositionSink) -> None:
        super().__init__()
        self.delivered = positions.delivered

    def __call__(self, error: KafkaError | None, message: Any) -> None:
        if error is None:
            self.delivered(message.key(), message.partition(), message.offset())
        else:
            self.failure(error)


class _AuthWatch:
    """librdkafka's ``error_cb`` of one producer: remembers the broker refusing its credentials.

    A refused SASL login never reaches a delivery report: the events only time out
    (``_MSG_TIMED_OUT``, after ``delivery.timeout.ms``) while ``error_cb`` reports ``_AUTHENTICATION``
    at every reconnect. Watching for it lets a publish fail in seconds, and say why."""

    __slots__ = ("refused",)

    def __init__(self) -> None:
        self.refused: KafkaError | None = None

    def __call__(self, error: KafkaError) -> None:
        if error.code() == KafkaError._AUTHENTICATION and self.refused is None:
            self.refused = error


_PRODUCERS: dict[tuple[tuple[str, str], ...], tuple[Producer, _AuthWatch]] = {}
_TOPICS_READY: set[tuple[str, str]] = set()


def producer_config(
    base: dict[str, str], *, delivery_timeout_ms: int, linger_ms: int, compression: str
) -> dict[str, Any]:
    return {
        **base,
        "enable.idempotence": True,
        "acks": "all",
        "delivery.timeout.ms": delivery_timeout_ms,
        "linger.ms": linger_ms,
        "compression.type": compression,
        # The Java client's partitioner, so keys land where Java producers and Kafka Streams expect.
        "partitioner": "murmur2_random",
        # Bound the client's local queue by bytes, not librdkafka's 1 GiB default: memory must not
        # grow with the file. Producing blocks (BufferError → poll) until deliveries free room.
        # 8 MiB / 20,000 messages keeps a million-event publish under 100 MB of RSS in all (bench/)
        # and still fills 1 MiB batches for every partition.
        "queue.buffering.max.kbytes": 8_192,
        "queue.buffering.max.messages": 20_000,
        "log.connection.close": False,
        # Success is counted as sent less failed once flush() has emptied the queue, so only
        # failures need a delivery report: no Python callback per acknowledged event. (A publish
        # whose key index records where each event landed uses a second producer, reporting all.)
        "delivery.report.only.error": True,
    }


def _cache_key(config: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((k, str(v)) for k, v in config.items()))


def _shared_producer(config: dict[str, Any]) -> tuple[Producer, _AuthWatch]:
    cache_key = _cache_key(config)
    cached = _PRODUCERS.get(cache_key)
    if cached is None:
        watch = _AuthWatch()
        cached = (Producer({**config, "error_cb": watch}), watch)
        _PRODUCERS[cache_key] = cached
    return cached


def _discard_producer(producer: Producer) -> None:
    """Drop a producer after a failure: its queue may hold events of a file we failed."""
    try:
        producer.purge()
        producer.flush(0)
    except KafkaException:
        pass
    for key, (cached, _watch) in list(_PRODUCERS.items()):
        if cached is producer:
            del _PRODUCERS[key]


def close_producers(timeout: float = 5.0) -> None:
    """Flush and forget every cached producer (end of a CLI run, the demo, a test session)."""
    for key, (producer, _watch) in list(_PRODUCERS.items()):
        producer.flush(timeout)
        del _PRODUCERS[key]
    _TOPICS_READY.clear()


#: How often a publish waiting for acknowledgements looks for a refused login.
_FLUSH_SLICE_S = 0.5


class KafkaPublisher:
    """Publishes to ``topic``. ``credentials`` (optional) gives the authentication settings before each
    publish, fresh ones when called with ``refresh=True`` (after the broker refused a login):
    :class:`dropgate.broker_auth.BrokerCredentials.settings`. A change of credentials makes a new
    producer; the file that failed is retried as a whole, as after any failed publish."""

    def __init__(
        self,
        kafka_config: dict[str, str],
        topic: str,
        *,
        delivery_timeout_ms: int = 120_000,
        linger_ms: int = 20,
        compression: str = "lz4",
        create_topic: bool = True,
        partitions: int = 3,
        replication_factor: int = -1,
        credentials: Callable[..., dict[str, Any]] | None = None,
    ) -> None:
        self.topic = topic
        self.bootstrap = kafka_config.get("bootstrap.servers", "?")
        self._base = kafka_config
        self._credentials = credentials
        self._refresh_credentials = False
        self._linger_ms = linger_ms
        self._compression = compression
        #: The producer last used, per kind (reporting every delivery or failures only).
        self._last_producers: dict[bool, Producer] = {}
        self._delivery_timeout_ms = delivery_timeout_ms
        self._delivery_timeout_s = delivery_timeout_ms / 1000
        self._create = create_topic
        self._partitions = partitions
        self._replication = replication_factor

    # -- configuration -------------------------------------------------------------------------
    def _kafka_config(self) -> dict[str, Any]:
        """The broker settings with the current credentials (re-read after a refused login)."""
        if self._credentials is None:
            return dict(self._base)
        try:
            auth = self._credentials(refresh=self._refresh_credentials)
        except Exception as error:  # Secrets Manager unreachable, the secret malformed: retry the file
            raise PublishError(f"cannot read the credentials for {self.bootstrap}: {error}") from None
        self._refresh_credentials = False
        return {**self._base, **auth}

    def _admin_config(self) -> dict[str, Any]:
        # librdkafka logs idle disconnects and background-queue purges at info level; not news.
        return {"log.connection.close": False, "log_level": 4, **self._kafka_config()}

    def _producer(self, *, reporting: bool) -> tuple[Producer, _AuthWatch]:
        """The shared producer for the current settings (``reporting``: a delivery report per event);
        one of the same kind made for older credentials is closed."""
        config = producer_config(
            self._kafka_config(),
            delivery_timeout_ms=self._delivery_timeout_ms,
            linger_ms=self._linger_ms,
            compression=self._compression,
        )
        if reporting:
            config["delivery.report.only.error"] = False
            # Half the queue: a reported event is held until its report is served, and the reporting
            # producer runs where the key index and ownership map already take memory (a million
            # products from S3: about 8 MiB less at the peak, the publish no slower; bench/results.md).
            config["queue.buffering.max.messages"] = 10_000
            config["queue.buffering.max.kbytes"] = 4_096
        producer, watch = _shared_producer(config)
        last = self._last_producers.get(reporting)
        if last is not None and last is not producer:
            _discard_producer(last)  # idle: every publish waits for its deliveries
        self._last_producers[reporting] = producer
        return producer, watch

    # -- topic ---------------------------------------------------------------------------------
    def ensure_topic(self, timeout: float | None = None) -> None:
        """Make sure the topic exists, creating it compacted when allowed. Once per process.

        The lookup waits no longer than an event delivery would: an unreachable broker fails the
        file as fast as a failed publish does."""
        marker = (self.bootstrap, self.topic)
        if marker in _TOPICS_READY:
            return
        if timeout is None:
            timeout = min(15.0, self._delivery_timeout_s)
        watch = _AuthWatch()
        admin = AdminClient({**self._admin_config(), "error_cb": watch})  # type: ignore[dict-item]
        topics = self._list_topics(admin, watch, timeout)
        if self.topic not in topics:
            if not self._create:
                raise TopicError(
                    f"topic '{self.topic}' does not exist on {self.bootstrap} and DROPGATE_CREATE_TOPIC is off; "
                    "create it with cleanup.policy=compact"
                )
            new = NewTopic(
                self.topic,
                num_partitions=self._partitions,
                replication_factor=self._replication,
                config={"cleanup.policy": "compact"},
            )
            future = admin.create_topics([new], operation_timeout=timeout, request_timeout=timeout)[self.topic]
            try:
                future.result()
            except KafkaException as error:
                kafka_error = error.args[0] if error.args else None
                if not (isinstance(kafka_error, KafkaError) and kafka_error.code() == KafkaError.TOPIC_ALREADY_EXISTS):
                    raise TopicError(
                        f"topic '{self.topic}' is missing on {self.bootstrap} and could not be created: {error}"
                    ) from None
        _TOPICS_READY.add(marker)

    def _list_topics(self, admin: AdminClient, watch: _AuthWatch, timeout: float) -> dict[str, Any]:
        """The broker's topics, asked in slices so that a refused login fails at once (and the next
        attempt reads the credentials afresh) instead of when ``timeout`` runs out."""
        give_up = time.monotonic() + timeout
        while True:
            try:
                topics: dict[str, Any] = admin.list_topics(
                    timeout=max(0.1, min(1.0, give_up - time.monotonic()))
                ).topics
                return topics
            except KafkaException as error:
                admin.poll(0)
                if watch.refused is not None:
                    self._refresh_credentials = True
                    raise TopicError(self._refused_message(watch.refused)) from None
                if time.monotonic() >= give_up:
                    raise TopicError(
                        f"cannot reach the Kafka broker at {self.bootstrap} to look up topic '{self.topic}': {error}"
                    ) from None

    # -- publish -------------------------------------------------------------------------------
    def publish(
        self, messages: Iterable[OutMessage], *, deadline: float | None = None, positions: PositionSink | None = None
    ) -> PublishReport:
        """Produce every message and wait for all acknowledgements, or raise :class:`PublishError`.

        ``deadline`` is a ``time.monotonic()`` instant (the Lambda's remaining time less a margin);
        past it the call gives up rather than be killed with events in flight. ``positions`` is told
        each acknowledged event's partition and offset (a delivery report per event: only then).
        """
        self.ensure_topic()
        started = time.monotonic()
        if deadline is None:
            deadline = started + self._delivery_timeout_s + 5
        producer, watch = self._producer(reporting=positions is not None)
        deliveries = _Reports(positions) if positions is not None else _Deliveries()
        sent = 0
        produce = producer.produce
        poll = producer.poll
        topic = self.topic
        try:
            for message in messages:
                while True:
                    try:
                        produce(topic, message.value, message.key, headers=message.headers, on_delivery=deliveries)
                        break
                    except BufferError:
                        poll(0.005)  # local queue full: give the client a moment to send and free it
                        if time.monotonic() > deadline:
                            raise PublishError(self._timeout_message(sent, deliveries, len(producer))) from None
                sent += 1
                if sent % 1000 == 0:
                    poll(0)
                    self._check_login(watch)
                    if deliveries.first_error is not None:
                        raise PublishError(self._error_message(sent, deliveries))
                    if time.monotonic() > deadline:
                        raise PublishError(self._timeout_message(sent, deliveries, len(producer)))
            remaining = self._flush(producer, watch, deadline)
            if remaining:
                raise PublishError(self._timeout_message(sent, deliveries, remaining))
            if deliveries.first_error is not None:
                raise PublishError(self._error_message(sent, deliveries))
        except (PublishError, KafkaException):
            _discard_producer(producer)
            self._last_producers.pop(positions is not None, None)
            # The broker may come back empty (or be another one): look the topic up again next time.
            _TOPICS_READY.discard((self.bootstrap, self.topic))
            raise
        return PublishReport(sent=sent, acknowledged=sent - deliveries.failed, seconds=time.monotonic() - started)

    def _flush(self, producer: Producer, watch: _AuthWatch, deadline: float) -> int:
        """Wait for every acknowledgement until ``deadline``, in slices, so that a refused login
        fails the publish at once instead of when the delivery timeout runs out."""
        while True:
            remaining: int = producer.flush(max(0.0, min(_FLUSH_SLICE_S, deadline - time.monotonic())))
            self._check_login(watch)
            if not remaining or time.monotonic() >= deadline:
                return remaining

    def _check_login(self, watch: _AuthWatch) -> None:
        """Fail the publish if the broker refused the credentials; the next one reads them afresh."""
        if watch.refused is not None:
            self._refresh_credentials = True
            raise PublishError(self._refused_message(watch.refused))

    def _refused_message(self, error: KafkaError) -> str:
        return f"the Kafka broker at {self.bootstrap} refused dropgate's credentials: {error.str()}"

    def _timeout_message(self, sent: int, deliveries: _Deliveries, in_flight: int) -> str:
        acknowledged = sent - in_flight - deliveries.failed
        return (
            f"gave up waiting for {self.bootstrap}: {acknowledged} of {sent} events to "
            f"'{self.topic}' acknowledged before the deadline"
        )

    def _error_message(self, sent: int, deliveries: _Deliveries) -> str:
        return (
            f"{deliveries.failed} of {sent} events to '{self.topic}' on {self.bootstrap} were not "
            f"acknowledged: {deliveries.first_error}"
        )
