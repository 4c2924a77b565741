"""A tracer whose spans cost a fraction of the OpenTelemetry SDK's, for the process's own
instrumentation (``stratus.core.tracing``) when nothing asks for more than the SDK's
defaults.

Why: a boot makes ~17 spans, and the SDK's ``Tracer.start_span`` and ``Span.end`` are ~100
Python calls a span on the event loop's thread before any processor runs (the sampler
asked through the parent context twice, ``SpanContext`` and ``TraceFlags`` built through
their constructors, a ``BoundedAttributes`` cleaning every value under a lock, a
``BoundedList`` for events and one for links, the tracer's internal metrics, a lock taken
at start and at end, a ``ReadableSpan`` copied at the end for the processors).

What stays the same: the span is an OpenTelemetry ``Span`` and a ``ReadableSpan`` (every
processor and exporter takes it as it takes the SDK's), made current, propagated (W3C
``traceparent``) and sampled as before (``ParentBased(ALWAYS_ON)``: a child of a parent
that was not sampled is a ``NonRecordingSpan``), its ids drawn as the SDK's
``RandomIdGenerator`` draws them, its attributes kept with the SDK's limits (a value of any
type but ``str``, ``int``, ``float``, ``bool`` or ``None``, a key that is not a non-empty
``str``, more attributes than ``SpanLimits.max_span_attributes`` or a value length limit:
the span's attributes become the SDK's ``BoundedAttributes``, which cleans, bounds and
counts what it dropped), the processors called at its start and end, and exceptions
recorded as the SDK records them.

What is left out: the spans do not count in the SDK's internal metrics
(``OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED``) and links are the SDK's business
(``start_span`` with links hands the span to the SDK's tracer). ``lean_tracer`` returns
the SDK's own tracer whenever the provider is set up otherwise than with these defaults.
"""

from __future__ import annotations

import logging
import random
import traceback
from collections.abc import Iterator, Mapping, Sequence
from time import time_ns
from types import TracebackType

from opentelemetry import trace
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.context import Context
from opentelemetry.sdk.trace import Event, ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace import Tracer as SdkTracer
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
from opentelemetry.sdk.util import BoundedList
from opentelemetry.semconv.attributes.exception_attributes import (
    EXCEPTION_ESCAPED,
    EXCEPTION_MESSAGE,
    EXCEPTION_STACKTRACE,
    EXCEPTION_TYPE,
)
from opentelemetry.trace import (
    DEFAULT_TRACE_STATE,
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    TraceState,
)
from opentelemetry.util import types
from opentelemetry.util._decorator import _agnosticcontextmanager

LOG = logging.getLogger(__name__)

#: Attribute values kept as they are, as ``BoundedAttributes`` would keep them.
_PLAIN: frozenset[type] = frozenset({str, int, float, bool, type(None)})
_UNSET = Status(StatusCode.UNSET)
_RANDOM = TraceFlags.RANDOM_TRACE_ID
#: A root span's flags (sampled, its trace id random) and a child's of a random trace id.
_SAMPLED_RANDOM = TraceFlags(TraceFlags.SAMPLED | TraceFlags.RANDOM_TRACE_ID)
_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_NOT_SAMPLED_RANDOM = TraceFlags(TraceFlags.RANDOM_TRACE_ID)
_NOT_SAMPLED = TraceFlags(TraceFlags.DEFAULT)
#: A new ``SpanContext`` without its constructor's checks: the ids are drawn here, in range.
_new_context = tuple.__new__
_getrandbits = random.getrandbits

#: Processor hooks known to do nothing, not called for each span.
_IDLE_STARTS = {SpanProcessor.on_start, SimpleSpanProcessor.on_start,
                BatchSpanProcessor.on_start}
_IDLE_ENDINGS = {SpanProcessor._on_ending, SimpleSpanProcessor._on_ending,
                 BatchSpanProcessor._on_ending}


class LeanSpan(trace.Span, ReadableSpan):
    """A recording span of ``LeanTracer``; also the ``ReadableSpan`` its processors get (it
    takes no change once ended, so it is not copied)."""

    _context: SpanContext  # never None, unlike a ReadableSpan's
    # Defaults shared by every span, set on one only when it differs.
    _end_time: int | None = None
    _status: Status = _UNSET
    _events: Sequence[Event] = ()
    _links: Sequence[trace.Link] = ()
    _record_exception = True
    _set_status_on_exception = True

    def __init__(self, tracer: LeanTracer, name: str, context: SpanContext,
                 parent: SpanContext | None, kind: SpanKind,
                 attributes: dict[str, types.AnyValue] | BoundedAttributes,
                 start_time: int) -> None:
        # ReadableSpan's fields, set here rather than by its __init__ (which makes a
        # Resource when none is given, and sets what the class attributes above default).
        self._tracer = tracer
        self._name = name
        self._context = context
        self._parent = parent
        self._kind = kind
        self._attributes = attributes
        self._start_time = start_time
        self._resource = tracer.sdk.resource
        self._instrumentation_info = tracer.instrumentation_info
        self._instrumentation_scope = tracer.instrumentation_scope

    def __repr__(self) -> str:
        return f'{type(self).__name__}(name="{self._name}", context={self._context})'

    def get_span_context(self) -> SpanContext:
        return self._context

    def is_recording(self) -> bool:
        return self._end_time is None

    def _ended(self, what: str) -> bool:
        if self._end_time is None:
            return False
        LOG.warning("%s on an ended span (%s): ignored", what, self._name)
        return True

    def _bounded(self) -> BoundedAttributes:
        """The attributes as the SDK keeps them, from now on: something a plain dict would
        not clean or bound came."""
        attributes = self._attributes
        if isinstance(attributes, BoundedAttributes):
            return attributes
        limits = self._tracer.limits
        bounded = BoundedAttributes(limits.max_span_attributes, attributes, immutable=False,
                                    max_value_len=limits.max_span_attribute_length)
        self._attributes = bounded
        return bounded

    def set_attribute(self, key: str, value: types.AnyValue) -> None:
        if self._end_time is not None:
            self._ended("set_attribute")
            return
        attributes = self._attributes
        if (type(attributes) is dict and type(value) in _PLAIN and type(key) is str and key
                and self._tracer.plain_values
                and (key in attributes or len(attributes) < self._tracer.max_attributes)):
            if key in attributes:  # as BoundedAttributes does: a key set again moves last
                del attributes[key]
            attributes[key] = value
        else:
            self._bounded()[key] = value

    def set_attributes(self, attributes: Mapping[str, types.AnyValue]) -> None:
        for key, value in attributes.items():
            self.set_attribute(key, value)

    def add_event(self, name: str, attributes: types.Attributes = None,
                  timestamp: int | None = None) -> None:
        if self._ended("add_event"):
            return
        limits = self._tracer.limits
        events = self._events
        if not isinstance(events, BoundedList):
            events = self._events = BoundedList(limits.max_events)
        events.append(Event(name, BoundedAttributes(
            limits.max_event_attributes, attributes, immutable=True,
            max_value_len=limits.max_attribute_length), timestamp))

    def add_link(self, context: SpanContext, attributes: types.Attributes = None) -> None:
        if not (context and (context.is_valid or attributes or context.trace_state)):
            return
        if self._ended("add_link"):
            return
        limits = self._tracer.limits
        links = self._links
        if not isinstance(links, BoundedList):
            links = self._links = BoundedList(limits.max_links)
        links.append(trace.Link(context, BoundedAttributes(
            limits.max_link_attributes, attributes, immutable=True,
            max_value_len=limits.max_attribute_length)))

    def update_name(self, name: str) -> None:
        if not self._ended("update_name"):
            self._name = name

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        # The SDK's rules: OK is final, UNSET is never set, a Status's own description wins.
        if self._ended("set_status"):
            return
        if self._status.status_code is StatusCode.OK:
            return
        if isinstance(status, Status):
            if status.status_code is not StatusCode.UNSET:
                self._status = status
        elif status is not StatusCode.UNSET:
            self._status = Status(status, description)

    def record_exception(self, exception: BaseException, attributes: types.Attributes = None,
                         timestamp: int | None = None, escaped: bool = False) -> None:
        """The SDK's exception event: type, message, stack trace, whether it escaped."""
        module = type(exception).__module__
        qualname = type(exception).__qualname__
        event: dict[str, types.AnyValue] = {
            EXCEPTION_TYPE: (f"{module}.{qualname}" if module and module != "builtins"
                             else qualname),
            EXCEPTION_MESSAGE: str(exception),
            EXCEPTION_STACKTRACE: "".join(traceback.format_exception(exception)),
            EXCEPTION_ESCAPED: str(escaped),
        }
        if attributes:
            event.update(attributes)
        self.add_event("exception", event, timestamp)

    def end(self, end_time: int | None = None) -> None:
        if self._end_time is not None:
            self._ended("end")
            return
        self._end_time = end_time if end_time is not None else time_ns()
        attributes = self._attributes
        if type(attributes) is not dict:
            attributes._immutable = True  # type: ignore[union-attr]
        tracer = self._tracer
        if tracer.multi._span_processors is not tracer.seen:
            tracer.refresh()
        for processor in tracer.ending:
            processor._on_ending(self)  # type: ignore[arg-type]
        for processor in tracer.ended:
            processor.on_end(self)

    def __exit__(self, exc_type: type[BaseException] | None, exc_val: BaseException | None,
                 exc_tb: TracebackType | None) -> None:
        # As the SDK's span used as a context manager: the exception recorded, then ended.
        if exc_val is not None and self.is_recording():
            if self._record_exception:
                self.record_exception(exc_val, escaped=True)
            if self._set_status_on_exception:
                self.set_status(Status(StatusCode.ERROR, f"{type(exc_val).__name__}: {exc_val}"))
        self.end()


class LeanTracer(trace.Tracer):
    """Makes ``LeanSpan``s with the SDK tracer's resource, scope, limits and processors."""

    def __init__(self, sdk: SdkTracer) -> None:
        self.sdk = sdk
        self.instrumentation_info = sdk.instrumentation_info
        self.instrumentation_scope = sdk._instrumentation_scope
        limits = sdk._span_limits
        self.limits = limits
        #: A plain dict holds the attributes while these limits cannot bite.
        self.max_attributes = (limits.max_span_attributes
                               if limits.max_span_attributes is not None else 1 << 62)
        self.plain_values = limits.max_span_attribute_length is None
        self.multi = sdk.span_processor
        # The processors' hooks that do something, by the processors' tuple they come from
        # (processors are added after the tracer is made: the span store's, tests').
        self.seen: tuple[SpanProcessor, ...] | None = None
        self.starting: tuple[SpanProcessor, ...] = ()
        self.ending: tuple[SpanProcessor, ...] = ()
        self.ended: tuple[SpanProcessor, ...] = ()

    def refresh(self) -> None:
        processors = self.multi._span_processors
        self.starting = tuple(p for p in processors
                              if getattr(type(p), "on_start", None) not in _IDLE_STARTS)
        self.ending = tuple(p for p in processors
                            if getattr(type(p), "_on_ending", None) not in _IDLE_ENDINGS)
        self.ended = processors
        self.seen = processors

    def start_span(self, name: str, context: Context | None = None,
                   kind: SpanKind = SpanKind.INTERNAL, attributes: types.Attributes = None,
                   links: Sequence[trace.Link] | None = None, start_time: int | None = None,
                   record_exception: bool = True,
                   set_status_on_exception: bool = True) -> trace.Span:
        if links:
            return self.sdk.start_span(name, context, kind, attributes, links, start_time,
                                       record_exception, set_status_on_exception)
        parent = trace.get_current_span(context).get_span_context()
        started = self.start(name, parent, kind, attributes, start_time, context)
        if not record_exception:
            started._record_exception = False  # type: ignore[attr-defined]
        if not set_status_on_exception:
            started._set_status_on_exception = False  # type: ignore[attr-defined]
        return started

    def start(self, name: str, parent: SpanContext, kind: SpanKind,
              attributes: types.Attributes, start_time: int | None,
              given: Context | None = None) -> trace.Span:
        """A span, child of ``parent`` (an invalid context: a root span), started;
        ``given``: the context ``parent`` was taken from, for the processors' ``on_start``."""
        span_id = _getrandbits(64)
        while not span_id:
            span_id = _getrandbits(64)
        # ``SpanContext`` is a tuple: (trace_id, span_id, is_remote, trace_flags,
        # trace_state, is_valid), read by index rather than through its properties.
        if parent[5]:
            # ParentBased(ALWAYS_ON): the parent's decision, remote or local, is followed.
            flags = parent[3]
            if not flags & TraceFlags.SAMPLED:
                return NonRecordingSpan(_new_context(SpanContext, (
                    parent[0], span_id, False,
                    _NOT_SAMPLED_RANDOM if flags & _RANDOM else _NOT_SAMPLED, parent[4], True)))
            context = _new_context(SpanContext, (
                parent[0], span_id, False, _SAMPLED_RANDOM if flags & _RANDOM else _SAMPLED,
                parent[4], True))
            parent_of: SpanContext | None = parent
        else:
            trace_id = _getrandbits(128)
            while not trace_id:
                trace_id = _getrandbits(128)
            context = _new_context(SpanContext, (
                trace_id, span_id, False, _SAMPLED_RANDOM, DEFAULT_TRACE_STATE, True))
            parent_of = None
        kept: dict[str, types.AnyValue] | BoundedAttributes = {}
        if attributes:
            plain = self.plain_values and len(attributes) <= self.max_attributes
            if plain:
                for key, value in attributes.items():  # a loop: no call
                    if type(value) not in _PLAIN or type(key) is not str or not key:
                        plain = False
                        break
            if plain:
                kept = dict(attributes)
            else:
                limits = self.limits
                kept = BoundedAttributes(limits.max_span_attributes, attributes,
                                         immutable=False,
                                         max_value_len=limits.max_span_attribute_length)
        started = LeanSpan(self, name, context, parent_of, kind, kept,
                           start_time if start_time is not None else time_ns())
        if self.multi._span_processors is not self.seen:
            self.refresh()
        for processor in self.starting:
            processor.on_start(started, parent_context=given)  # type: ignore[arg-type]
        return started

    @_agnosticcontextmanager
    def start_as_current_span(self, name: str, context: Context | None = None,
                              kind: SpanKind = SpanKind.INTERNAL,
                              attributes: types.Attributes = None,
                              links: Sequence[trace.Link] | None = None,
                              start_time: int | None = None, record_exception: bool = True,
                              set_status_on_exception: bool = True,
                              end_on_exit: bool = True) -> Iterator[trace.Span]:
        started = self.start_span(name, context, kind, attributes, links, start_time,
                                  record_exception, set_status_on_exception)
        with trace.use_span(started, end_on_exit=end_on_exit,
                            record_exception=record_exception,
                            set_status_on_exception=set_status_on_exception) as current:
            yield current


class ParentOrAlwaysOn(Sampler):
    """OpenTelemetry's default sampler (``ParentBased(ALWAYS_ON)``: a span is recorded
    unless its parent, remote or local, was not sampled), in one step: the default asks
    the parent's context twice through two samplers for each span. ``LeanTracer`` decides
    as this does, without asking it."""

    def should_sample(self, parent_context: Context | None, trace_id: int, name: str,
                      kind: SpanKind | None = None, attributes: types.Attributes = None,
                      links: Sequence[trace.Link] | None = None,
                      trace_state: TraceState | None = None) -> SamplingResult:
        parent = trace.get_current_span(parent_context).get_span_context()
        if not parent.is_valid:
            return SamplingResult(Decision.RECORD_AND_SAMPLE, attributes, None)
        if parent.trace_flags.sampled:
            return SamplingResult(Decision.RECORD_AND_SAMPLE, attributes, parent.trace_state)
        return SamplingResult(Decision.DROP, None, parent.trace_state)

    def get_description(self) -> str:
        return "ParentBased{root:AlwaysOnSampler}"


def lean_tracer(provider: TracerProvider, name: str) -> trace.Tracer:
    """``provider``'s tracer ``name``: a ``LeanTracer`` when the provider samples with
    ``ParentOrAlwaysOn`` and keeps the SDK's other defaults (the random id generator, its
    tracers enabled, no internal metrics); otherwise the SDK's own."""
    sdk = provider.get_tracer(name)
    if (not isinstance(sdk, SdkTracer) or type(sdk.sampler) is not ParentOrAlwaysOn
            or not sdk._is_enabled() or type(sdk.id_generator) is not RandomIdGenerator
            or type(getattr(sdk, "_tracer_metrics", None)).__name__
            not in ("NoneType", "NoOpTracerMetrics")):
        return sdk
    return LeanTracer(sdk)

