from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Lane(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LANE_NORMAL: _ClassVar[Lane]
    LANE_HIGH: _ClassVar[Lane]
    LANE_LOW: _ClassVar[Lane]

class AckStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ACK_STATUS_UNSPECIFIED: _ClassVar[AckStatus]
    ACCEPTED: _ClassVar[AckStatus]
    INDEXED: _ClassVar[AckStatus]
    DUPLICATE: _ClassVar[AckStatus]
    REJECTED: _ClassVar[AckStatus]

class RejectCode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REJECT_CODE_UNSPECIFIED: _ClassVar[RejectCode]
    INVALID: _ClassVar[RejectCode]
    OVERLOADED: _ClassVar[RejectCode]
    WINDOW_EXCEEDED: _ClassVar[RejectCode]
    SEQUENCE_GAP: _ClassVar[RejectCode]
    SESSION_CLOSED: _ClassVar[RejectCode]
    UNAVAILABLE: _ClassVar[RejectCode]
    STORAGE_FULL: _ClassVar[RejectCode]
    ALREADY_EXISTS: _ClassVar[RejectCode]
    NOT_FOUND: _ClassVar[RejectCode]

class PressureState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    NORMAL: _ClassVar[PressureState]
    WARNING: _ClassVar[PressureState]
    CRITICAL: _ClassVar[PressureState]
    OVERLOADED_STATE: _ClassVar[PressureState]

class Metric(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    COSINE: _ClassVar[Metric]
    L2: _ClassVar[Metric]
    INNER_PRODUCT: _ClassVar[Metric]

class Precision(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    F16: _ClassVar[Precision]
    F32: _ClassVar[Precision]
    I8: _ClassVar[Precision]
LANE_NORMAL: Lane
LANE_HIGH: Lane
LANE_LOW: Lane
ACK_STATUS_UNSPECIFIED: AckStatus
ACCEPTED: AckStatus
INDEXED: AckStatus
DUPLICATE: AckStatus
REJECTED: AckStatus
REJECT_CODE_UNSPECIFIED: RejectCode
INVALID: RejectCode
OVERLOADED: RejectCode
WINDOW_EXCEEDED: RejectCode
SEQUENCE_GAP: RejectCode
SESSION_CLOSED: RejectCode
UNAVAILABLE: RejectCode
STORAGE_FULL: RejectCode
ALREADY_EXISTS: RejectCode
NOT_FOUND: RejectCode
NORMAL: PressureState
WARNING: PressureState
CRITICAL: PressureState
OVERLOADED_STATE: PressureState
COSINE: Metric
L2: Metric
INNER_PRODUCT: Metric
F16: Precision
F32: Precision
I8: Precision

class Observation(_message.Message):
    __slots__ = ("id", "content", "embedding", "confidence", "occurred_at_us", "tags", "sequence", "lane", "supersedes", "expires_at_us", "embedding_f32")
    class TagsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    OCCURRED_AT_US_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    LANE_FIELD_NUMBER: _ClassVar[int]
    SUPERSEDES_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_US_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_F32_FIELD_NUMBER: _ClassVar[int]
    id: str
    content: str
    embedding: _containers.RepeatedScalarFieldContainer[float]
    confidence: float
    occurred_at_us: int
    tags: _containers.ScalarMap[str, str]
    sequence: int
    lane: Lane
    supersedes: str
    expires_at_us: int
    embedding_f32: bytes
    def __init__(self, id: _Optional[str] = ..., content: _Optional[str] = ..., embedding: _Optional[_Iterable[float]] = ..., confidence: _Optional[float] = ..., occurred_at_us: _Optional[int] = ..., tags: _Optional[_Mapping[str, str]] = ..., sequence: _Optional[int] = ..., lane: _Optional[_Union[Lane, str]] = ..., supersedes: _Optional[str] = ..., expires_at_us: _Optional[int] = ..., embedding_f32: _Optional[bytes] = ...) -> None: ...

class ObservationBatch(_message.Message):
    __slots__ = ("observations",)
    OBSERVATIONS_FIELD_NUMBER: _ClassVar[int]
    observations: _containers.RepeatedCompositeFieldContainer[Observation]
    def __init__(self, observations: _Optional[_Iterable[_Union[Observation, _Mapping]]] = ...) -> None: ...

class ObserveRequest(_message.Message):
    __slots__ = ("init", "observation", "flow_control", "close", "batch")
    INIT_FIELD_NUMBER: _ClassVar[int]
    OBSERVATION_FIELD_NUMBER: _ClassVar[int]
    FLOW_CONTROL_FIELD_NUMBER: _ClassVar[int]
    CLOSE_FIELD_NUMBER: _ClassVar[int]
    BATCH_FIELD_NUMBER: _ClassVar[int]
    init: Init
    observation: Observation
    flow_control: FlowControl
    close: Close
    batch: ObservationBatch
    def __init__(self, init: _Optional[_Union[Init, _Mapping]] = ..., observation: _Optional[_Union[Observation, _Mapping]] = ..., flow_control: _Optional[_Union[FlowControl, _Mapping]] = ..., close: _Optional[_Union[Close, _Mapping]] = ..., batch: _Optional[_Union[ObservationBatch, _Mapping]] = ...) -> None: ...

class Init(_message.Message):
    __slots__ = ("space", "session_id", "resume_only", "credit_window", "want_indexed")
    SPACE_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    RESUME_ONLY_FIELD_NUMBER: _ClassVar[int]
    CREDIT_WINDOW_FIELD_NUMBER: _ClassVar[int]
    WANT_INDEXED_FIELD_NUMBER: _ClassVar[int]
    space: str
    session_id: str
    resume_only: bool
    credit_window: int
    want_indexed: bool
    def __init__(self, space: _Optional[str] = ..., session_id: _Optional[str] = ..., resume_only: _Optional[bool] = ..., credit_window: _Optional[int] = ..., want_indexed: _Optional[bool] = ...) -> None: ...

class FlowControl(_message.Message):
    __slots__ = ("pause", "client_buffer")
    PAUSE_FIELD_NUMBER: _ClassVar[int]
    CLIENT_BUFFER_FIELD_NUMBER: _ClassVar[int]
    pause: bool
    client_buffer: int
    def __init__(self, pause: _Optional[bool] = ..., client_buffer: _Optional[int] = ...) -> None: ...

class Close(_message.Message):
    __slots__ = ("drain",)
    DRAIN_FIELD_NUMBER: _ClassVar[int]
    drain: bool
    def __init__(self, drain: _Optional[bool] = ...) -> None: ...

class ObserveResponse(_message.Message):
    __slots__ = ("init_ack", "acks", "status", "closed")
    INIT_ACK_FIELD_NUMBER: _ClassVar[int]
    ACKS_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    CLOSED_FIELD_NUMBER: _ClassVar[int]
    init_ack: InitAck
    acks: AckBatch
    status: StreamStatus
    closed: Closed
    def __init__(self, init_ack: _Optional[_Union[InitAck, _Mapping]] = ..., acks: _Optional[_Union[AckBatch, _Mapping]] = ..., status: _Optional[_Union[StreamStatus, _Mapping]] = ..., closed: _Optional[_Union[Closed, _Mapping]] = ...) -> None: ...

class InitAck(_message.Message):
    __slots__ = ("session_id", "next_sequence", "credit_window", "capabilities", "limits")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    NEXT_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    CREDIT_WINDOW_FIELD_NUMBER: _ClassVar[int]
    CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    next_sequence: int
    credit_window: int
    capabilities: _containers.RepeatedScalarFieldContainer[str]
    limits: Limits
    def __init__(self, session_id: _Optional[str] = ..., next_sequence: _Optional[int] = ..., credit_window: _Optional[int] = ..., capabilities: _Optional[_Iterable[str]] = ..., limits: _Optional[_Union[Limits, _Mapping]] = ...) -> None: ...

class Limits(_message.Message):
    __slots__ = ("max_dim", "max_content_bytes", "max_message_bytes", "max_k", "max_sessions")
    MAX_DIM_FIELD_NUMBER: _ClassVar[int]
    MAX_CONTENT_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_MESSAGE_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_K_FIELD_NUMBER: _ClassVar[int]
    MAX_SESSIONS_FIELD_NUMBER: _ClassVar[int]
    max_dim: int
    max_content_bytes: int
    max_message_bytes: int
    max_k: int
    max_sessions: int
    def __init__(self, max_dim: _Optional[int] = ..., max_content_bytes: _Optional[int] = ..., max_message_bytes: _Optional[int] = ..., max_k: _Optional[int] = ..., max_sessions: _Optional[int] = ...) -> None: ...

class Ack(_message.Message):
    __slots__ = ("sequence", "memory_id", "lsn", "status", "reason", "retry_after_ms", "code", "expected_sequence")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    MEMORY_ID_FIELD_NUMBER: _ClassVar[int]
    LSN_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    RETRY_AFTER_MS_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    memory_id: str
    lsn: int
    status: AckStatus
    reason: str
    retry_after_ms: int
    code: RejectCode
    expected_sequence: int
    def __init__(self, sequence: _Optional[int] = ..., memory_id: _Optional[str] = ..., lsn: _Optional[int] = ..., status: _Optional[_Union[AckStatus, str]] = ..., reason: _Optional[str] = ..., retry_after_ms: _Optional[int] = ..., code: _Optional[_Union[RejectCode, str]] = ..., expected_sequence: _Optional[int] = ...) -> None: ...

class AckBatch(_message.Message):
    __slots__ = ("acks",)
    ACKS_FIELD_NUMBER: _ClassVar[int]
    acks: _containers.RepeatedCompositeFieldContainer[Ack]
    def __init__(self, acks: _Optional[_Iterable[_Union[Ack, _Mapping]]] = ...) -> None: ...

class StreamStatus(_message.Message):
    __slots__ = ("state", "pressure", "queue_depth", "queue_capacity", "credit_window", "suggested_batch", "retry_after_ms", "drain_rate", "fresh_fill", "warm_fill")
    STATE_FIELD_NUMBER: _ClassVar[int]
    PRESSURE_FIELD_NUMBER: _ClassVar[int]
    QUEUE_DEPTH_FIELD_NUMBER: _ClassVar[int]
    QUEUE_CAPACITY_FIELD_NUMBER: _ClassVar[int]
    CREDIT_WINDOW_FIELD_NUMBER: _ClassVar[int]
    SUGGESTED_BATCH_FIELD_NUMBER: _ClassVar[int]
    RETRY_AFTER_MS_FIELD_NUMBER: _ClassVar[int]
    DRAIN_RATE_FIELD_NUMBER: _ClassVar[int]
    FRESH_FILL_FIELD_NUMBER: _ClassVar[int]
    WARM_FILL_FIELD_NUMBER: _ClassVar[int]
    state: PressureState
    pressure: float
    queue_depth: int
    queue_capacity: int
    credit_window: int
    suggested_batch: int
    retry_after_ms: int
    drain_rate: float
    fresh_fill: float
    warm_fill: float
    def __init__(self, state: _Optional[_Union[PressureState, str]] = ..., pressure: _Optional[float] = ..., queue_depth: _Optional[int] = ..., queue_capacity: _Optional[int] = ..., credit_window: _Optional[int] = ..., suggested_batch: _Optional[int] = ..., retry_after_ms: _Optional[int] = ..., drain_rate: _Optional[float] = ..., fresh_fill: _Optional[float] = ..., warm_fill: _Optional[float] = ...) -> None: ...

class MemoryRequest(_message.Message):
    __slots__ = ("init", "observation", "recall", "flow_control", "close", "batch")
    INIT_FIELD_NUMBER: _ClassVar[int]
    OBSERVATION_FIELD_NUMBER: _ClassVar[int]
    RECALL_FIELD_NUMBER: _ClassVar[int]
    FLOW_CONTROL_FIELD_NUMBER: _ClassVar[int]
    CLOSE_FIELD_NUMBER: _ClassVar[int]
    BATCH_FIELD_NUMBER: _ClassVar[int]
    init: Init
    observation: Observation
    recall: RecallQuery
    flow_control: FlowControl
    close: Close
    batch: ObservationBatch
    def __init__(self, init: _Optional[_Union[Init, _Mapping]] = ..., observation: _Optional[_Union[Observation, _Mapping]] = ..., recall: _Optional[_Union[RecallQuery, _Mapping]] = ..., flow_control: _Optional[_Union[FlowControl, _Mapping]] = ..., close: _Optional[_Union[Close, _Mapping]] = ..., batch: _Optional[_Union[ObservationBatch, _Mapping]] = ...) -> None: ...

class RecallQuery(_message.Message):
    __slots__ = ("request_id", "request")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    request: RecallRequest
    def __init__(self, request_id: _Optional[str] = ..., request: _Optional[_Union[RecallRequest, _Mapping]] = ...) -> None: ...

class MemoryResponse(_message.Message):
    __slots__ = ("init_ack", "acks", "recall", "status", "closed")
    INIT_ACK_FIELD_NUMBER: _ClassVar[int]
    ACKS_FIELD_NUMBER: _ClassVar[int]
    RECALL_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    CLOSED_FIELD_NUMBER: _ClassVar[int]
    init_ack: InitAck
    acks: AckBatch
    recall: RecallResult
    status: StreamStatus
    closed: Closed
    def __init__(self, init_ack: _Optional[_Union[InitAck, _Mapping]] = ..., acks: _Optional[_Union[AckBatch, _Mapping]] = ..., recall: _Optional[_Union[RecallResult, _Mapping]] = ..., status: _Optional[_Union[StreamStatus, _Mapping]] = ..., closed: _Optional[_Union[Closed, _Mapping]] = ...) -> None: ...

class RecallResult(_message.Message):
    __slots__ = ("request_id", "memories", "snapshot_lsn", "more", "error_code", "error")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    MEMORIES_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_LSN_FIELD_NUMBER: _ClassVar[int]
    MORE_FIELD_NUMBER: _ClassVar[int]
    ERROR_CODE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    memories: _containers.RepeatedCompositeFieldContainer[Memory]
    snapshot_lsn: int
    more: bool
    error_code: str
    error: str
    def __init__(self, request_id: _Optional[str] = ..., memories: _Optional[_Iterable[_Union[Memory, _Mapping]]] = ..., snapshot_lsn: _Optional[int] = ..., more: _Optional[bool] = ..., error_code: _Optional[str] = ..., error: _Optional[str] = ...) -> None: ...

class Closed(_message.Message):
    __slots__ = ("final_sequence",)
    FINAL_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    final_sequence: int
    def __init__(self, final_sequence: _Optional[int] = ...) -> None: ...

class RecallRequest(_message.Message):
    __slots__ = ("space", "cue", "k", "batch_size", "snapshot_lsn", "min_lsn", "max_wait_ms", "include_embedding", "filter", "ranking", "cue_f32", "packed_embeddings")
    SPACE_FIELD_NUMBER: _ClassVar[int]
    CUE_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_LSN_FIELD_NUMBER: _ClassVar[int]
    MIN_LSN_FIELD_NUMBER: _ClassVar[int]
    MAX_WAIT_MS_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_EMBEDDING_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    RANKING_FIELD_NUMBER: _ClassVar[int]
    CUE_F32_FIELD_NUMBER: _ClassVar[int]
    PACKED_EMBEDDINGS_FIELD_NUMBER: _ClassVar[int]
    space: str
    cue: _containers.RepeatedScalarFieldContainer[float]
    k: int
    batch_size: int
    snapshot_lsn: int
    min_lsn: int
    max_wait_ms: int
    include_embedding: bool
    filter: Filter
    ranking: Ranking
    cue_f32: bytes
    packed_embeddings: bool
    def __init__(self, space: _Optional[str] = ..., cue: _Optional[_Iterable[float]] = ..., k: _Optional[int] = ..., batch_size: _Optional[int] = ..., snapshot_lsn: _Optional[int] = ..., min_lsn: _Optional[int] = ..., max_wait_ms: _Optional[int] = ..., include_embedding: _Optional[bool] = ..., filter: _Optional[_Union[Filter, _Mapping]] = ..., ranking: _Optional[_Union[Ranking, _Mapping]] = ..., cue_f32: _Optional[bytes] = ..., packed_embeddings: _Optional[bool] = ...) -> None: ...

class Filter(_message.Message):
    __slots__ = ("tags", "session_ids", "occurred_at", "recorded_at", "min_confidence")
    TAGS_FIELD_NUMBER: _ClassVar[int]
    SESSION_IDS_FIELD_NUMBER: _ClassVar[int]
    OCCURRED_AT_FIELD_NUMBER: _ClassVar[int]
    RECORDED_AT_FIELD_NUMBER: _ClassVar[int]
    MIN_CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    tags: _containers.RepeatedCompositeFieldContainer[TagClause]
    session_ids: _containers.RepeatedScalarFieldContainer[str]
    occurred_at: TimeRange
    recorded_at: TimeRange
    min_confidence: float
    def __init__(self, tags: _Optional[_Iterable[_Union[TagClause, _Mapping]]] = ..., session_ids: _Optional[_Iterable[str]] = ..., occurred_at: _Optional[_Union[TimeRange, _Mapping]] = ..., recorded_at: _Optional[_Union[TimeRange, _Mapping]] = ..., min_confidence: _Optional[float] = ...) -> None: ...

class TagClause(_message.Message):
    __slots__ = ("key", "equals", "any_of", "present", "absent")
    KEY_FIELD_NUMBER: _ClassVar[int]
    EQUALS_FIELD_NUMBER: _ClassVar[int]
    ANY_OF_FIELD_NUMBER: _ClassVar[int]
    PRESENT_FIELD_NUMBER: _ClassVar[int]
    ABSENT_FIELD_NUMBER: _ClassVar[int]
    key: str
    equals: str
    any_of: StringSet
    present: bool
    absent: bool
    def __init__(self, key: _Optional[str] = ..., equals: _Optional[str] = ..., any_of: _Optional[_Union[StringSet, _Mapping]] = ..., present: _Optional[bool] = ..., absent: _Optional[bool] = ...) -> None: ...

class StringSet(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, values: _Optional[_Iterable[str]] = ...) -> None: ...

class TimeRange(_message.Message):
    __slots__ = ("from_us", "until_us")
    FROM_US_FIELD_NUMBER: _ClassVar[int]
    UNTIL_US_FIELD_NUMBER: _ClassVar[int]
    from_us: int
    until_us: int
    def __init__(self, from_us: _Optional[int] = ..., until_us: _Optional[int] = ...) -> None: ...

class Ranking(_message.Message):
    __slots__ = ("half_life_ms", "confidence_weight")
    HALF_LIFE_MS_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    half_life_ms: int
    confidence_weight: float
    def __init__(self, half_life_ms: _Optional[int] = ..., confidence_weight: _Optional[float] = ...) -> None: ...

class Memory(_message.Message):
    __slots__ = ("id", "lsn", "score", "confidence", "content", "tags", "occurred_at_us", "recorded_at_us", "session_id", "session_sequence", "embedding", "expires_at_us", "supersedes", "embedding_f32")
    class TagsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    LSN_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    OCCURRED_AT_US_FIELD_NUMBER: _ClassVar[int]
    RECORDED_AT_US_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    SESSION_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_US_FIELD_NUMBER: _ClassVar[int]
    SUPERSEDES_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_F32_FIELD_NUMBER: _ClassVar[int]
    id: str
    lsn: int
    score: float
    confidence: float
    content: str
    tags: _containers.ScalarMap[str, str]
    occurred_at_us: int
    recorded_at_us: int
    session_id: str
    session_sequence: int
    embedding: _containers.RepeatedScalarFieldContainer[float]
    expires_at_us: int
    supersedes: str
    embedding_f32: bytes
    def __init__(self, id: _Optional[str] = ..., lsn: _Optional[int] = ..., score: _Optional[float] = ..., confidence: _Optional[float] = ..., content: _Optional[str] = ..., tags: _Optional[_Mapping[str, str]] = ..., occurred_at_us: _Optional[int] = ..., recorded_at_us: _Optional[int] = ..., session_id: _Optional[str] = ..., session_sequence: _Optional[int] = ..., embedding: _Optional[_Iterable[float]] = ..., expires_at_us: _Optional[int] = ..., supersedes: _Optional[str] = ..., embedding_f32: _Optional[bytes] = ...) -> None: ...

class RecallResponse(_message.Message):
    __slots__ = ("memories", "snapshot_lsn", "more")
    MEMORIES_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_LSN_FIELD_NUMBER: _ClassVar[int]
    MORE_FIELD_NUMBER: _ClassVar[int]
    memories: _containers.RepeatedCompositeFieldContainer[Memory]
    snapshot_lsn: int
    more: bool
    def __init__(self, memories: _Optional[_Iterable[_Union[Memory, _Mapping]]] = ..., snapshot_lsn: _Optional[int] = ..., more: _Optional[bool] = ...) -> None: ...

class RecallOnceResponse(_message.Message):
    __slots__ = ("memories", "snapshot_lsn")
    MEMORIES_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_LSN_FIELD_NUMBER: _ClassVar[int]
    memories: _containers.RepeatedCompositeFieldContainer[Memory]
    snapshot_lsn: int
    def __init__(self, memories: _Optional[_Iterable[_Union[Memory, _Mapping]]] = ..., snapshot_lsn: _Optional[int] = ...) -> None: ...

class RememberRequest(_message.Message):
    __slots__ = ("space", "observation")
    SPACE_FIELD_NUMBER: _ClassVar[int]
    OBSERVATION_FIELD_NUMBER: _ClassVar[int]
    space: str
    observation: Observation
    def __init__(self, space: _Optional[str] = ..., observation: _Optional[_Union[Observation, _Mapping]] = ...) -> None: ...

class RememberResponse(_message.Message):
    __slots__ = ("memory_id", "lsn")
    MEMORY_ID_FIELD_NUMBER: _ClassVar[int]
    LSN_FIELD_NUMBER: _ClassVar[int]
    memory_id: str
    lsn: int
    def __init__(self, memory_id: _Optional[str] = ..., lsn: _Optional[int] = ...) -> None: ...

class CreateSpaceRequest(_message.Message):
    __slots__ = ("name", "dim", "metric", "precision", "m", "ef_construction", "ef_search", "default_ttl_ms")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DIM_FIELD_NUMBER: _ClassVar[int]
    METRIC_FIELD_NUMBER: _ClassVar[int]
    PRECISION_FIELD_NUMBER: _ClassVar[int]
    M_FIELD_NUMBER: _ClassVar[int]
    EF_CONSTRUCTION_FIELD_NUMBER: _ClassVar[int]
    EF_SEARCH_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_TTL_MS_FIELD_NUMBER: _ClassVar[int]
    name: str
    dim: int
    metric: Metric
    precision: Precision
    m: int
    ef_construction: int
    ef_search: int
    default_ttl_ms: int
    def __init__(self, name: _Optional[str] = ..., dim: _Optional[int] = ..., metric: _Optional[_Union[Metric, str]] = ..., precision: _Optional[_Union[Precision, str]] = ..., m: _Optional[int] = ..., ef_construction: _Optional[int] = ..., ef_search: _Optional[int] = ..., default_ttl_ms: _Optional[int] = ...) -> None: ...

class SpaceInfo(_message.Message):
    __slots__ = ("name", "dim", "metric", "precision", "m", "ef_construction", "ef_search", "created_at_us", "default_ttl_ms")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DIM_FIELD_NUMBER: _ClassVar[int]
    METRIC_FIELD_NUMBER: _ClassVar[int]
    PRECISION_FIELD_NUMBER: _ClassVar[int]
    M_FIELD_NUMBER: _ClassVar[int]
    EF_CONSTRUCTION_FIELD_NUMBER: _ClassVar[int]
    EF_SEARCH_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_US_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_TTL_MS_FIELD_NUMBER: _ClassVar[int]
    name: str
    dim: int
    metric: Metric
    precision: Precision
    m: int
    ef_construction: int
    ef_search: int
    created_at_us: int
    default_ttl_ms: int
    def __init__(self, name: _Optional[str] = ..., dim: _Optional[int] = ..., metric: _Optional[_Union[Metric, str]] = ..., precision: _Optional[_Union[Precision, str]] = ..., m: _Optional[int] = ..., ef_construction: _Optional[int] = ..., ef_search: _Optional[int] = ..., created_at_us: _Optional[int] = ..., default_ttl_ms: _Optional[int] = ...) -> None: ...

class SpaceStats(_message.Message):
    __slots__ = ("committed_lsn", "indexed_lsn", "indexed_count", "fresh_count", "checkpoint_lsn", "attrs_bytes", "live_bytes", "dead_bytes", "unpurged", "oldest_snapshot_lsn", "memories", "warm_count", "warm_entered", "warm_moved")
    COMMITTED_LSN_FIELD_NUMBER: _ClassVar[int]
    INDEXED_LSN_FIELD_NUMBER: _ClassVar[int]
    INDEXED_COUNT_FIELD_NUMBER: _ClassVar[int]
    FRESH_COUNT_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_LSN_FIELD_NUMBER: _ClassVar[int]
    ATTRS_BYTES_FIELD_NUMBER: _ClassVar[int]
    LIVE_BYTES_FIELD_NUMBER: _ClassVar[int]
    DEAD_BYTES_FIELD_NUMBER: _ClassVar[int]
    UNPURGED_FIELD_NUMBER: _ClassVar[int]
    OLDEST_SNAPSHOT_LSN_FIELD_NUMBER: _ClassVar[int]
    MEMORIES_FIELD_NUMBER: _ClassVar[int]
    WARM_COUNT_FIELD_NUMBER: _ClassVar[int]
    WARM_ENTERED_FIELD_NUMBER: _ClassVar[int]
    WARM_MOVED_FIELD_NUMBER: _ClassVar[int]
    committed_lsn: int
    indexed_lsn: int
    indexed_count: int
    fresh_count: int
    checkpoint_lsn: int
    attrs_bytes: int
    live_bytes: int
    dead_bytes: int
    unpurged: int
    oldest_snapshot_lsn: int
    memories: int
    warm_count: int
    warm_entered: int
    warm_moved: int
    def __init__(self, committed_lsn: _Optional[int] = ..., indexed_lsn: _Optional[int] = ..., indexed_count: _Optional[int] = ..., fresh_count: _Optional[int] = ..., checkpoint_lsn: _Optional[int] = ..., attrs_bytes: _Optional[int] = ..., live_bytes: _Optional[int] = ..., dead_bytes: _Optional[int] = ..., unpurged: _Optional[int] = ..., oldest_snapshot_lsn: _Optional[int] = ..., memories: _Optional[int] = ..., warm_count: _Optional[int] = ..., warm_entered: _Optional[int] = ..., warm_moved: _Optional[int] = ...) -> None: ...

class ListSpacesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListSpacesResponse(_message.Message):
    __slots__ = ("spaces",)
    SPACES_FIELD_NUMBER: _ClassVar[int]
    spaces: _containers.RepeatedCompositeFieldContainer[SpaceInfo]
    def __init__(self, spaces: _Optional[_Iterable[_Union[SpaceInfo, _Mapping]]] = ...) -> None: ...

class DescribeSpaceRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class DescribeSpaceResponse(_message.Message):
    __slots__ = ("info", "stats")
    INFO_FIELD_NUMBER: _ClassVar[int]
    STATS_FIELD_NUMBER: _ClassVar[int]
    info: SpaceInfo
    stats: SpaceStats
    def __init__(self, info: _Optional[_Union[SpaceInfo, _Mapping]] = ..., stats: _Optional[_Union[SpaceStats, _Mapping]] = ...) -> None: ...

class DropSpaceRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class DropSpaceResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class StatsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class StatsResponse(_message.Message):
    __slots__ = ("spaces", "pressure", "server_rss_bytes", "server_peak_rss_bytes", "accepted", "refused", "duplicates", "indexed", "sessions_open", "log_bytes", "disk_free_bytes", "disk_reserve_bytes", "data_bytes")
    class Space(_message.Message):
        __slots__ = ("info", "stats")
        INFO_FIELD_NUMBER: _ClassVar[int]
        STATS_FIELD_NUMBER: _ClassVar[int]
        info: SpaceInfo
        stats: SpaceStats
        def __init__(self, info: _Optional[_Union[SpaceInfo, _Mapping]] = ..., stats: _Optional[_Union[SpaceStats, _Mapping]] = ...) -> None: ...
    SPACES_FIELD_NUMBER: _ClassVar[int]
    PRESSURE_FIELD_NUMBER: _ClassVar[int]
    SERVER_RSS_BYTES_FIELD_NUMBER: _ClassVar[int]
    SERVER_PEAK_RSS_BYTES_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    REFUSED_FIELD_NUMBER: _ClassVar[int]
    DUPLICATES_FIELD_NUMBER: _ClassVar[int]
    INDEXED_FIELD_NUMBER: _ClassVar[int]
    SESSIONS_OPEN_FIELD_NUMBER: _ClassVar[int]
    LOG_BYTES_FIELD_NUMBER: _ClassVar[int]
    DISK_FREE_BYTES_FIELD_NUMBER: _ClassVar[int]
    DISK_RESERVE_BYTES_FIELD_NUMBER: _ClassVar[int]
    DATA_BYTES_FIELD_NUMBER: _ClassVar[int]
    spaces: _containers.RepeatedCompositeFieldContainer[StatsResponse.Space]
    pressure: StreamStatus
    server_rss_bytes: int
    server_peak_rss_bytes: int
    accepted: int
    refused: int
    duplicates: int
    indexed: int
    sessions_open: int
    log_bytes: int
    disk_free_bytes: int
    disk_reserve_bytes: int
    data_bytes: int
    def __init__(self, spaces: _Optional[_Iterable[_Union[StatsResponse.Space, _Mapping]]] = ..., pressure: _Optional[_Union[StreamStatus, _Mapping]] = ..., server_rss_bytes: _Optional[int] = ..., server_peak_rss_bytes: _Optional[int] = ..., accepted: _Optional[int] = ..., refused: _Optional[int] = ..., duplicates: _Optional[int] = ..., indexed: _Optional[int] = ..., sessions_open: _Optional[int] = ..., log_bytes: _Optional[int] = ..., disk_free_bytes: _Optional[int] = ..., disk_reserve_bytes: _Optional[int] = ..., data_bytes: _Optional[int] = ...) -> None: ...

class ExportRequest(_message.Message):
    __slots__ = ("space", "after_lsn", "snapshot_lsn", "batch_size", "include_embedding", "filter", "packed_embeddings")
    SPACE_FIELD_NUMBER: _ClassVar[int]
    AFTER_LSN_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_LSN_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_EMBEDDING_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    PACKED_EMBEDDINGS_FIELD_NUMBER: _ClassVar[int]
    space: str
    after_lsn: int
    snapshot_lsn: int
    batch_size: int
    include_embedding: bool
    filter: Filter
    packed_embeddings: bool
    def __init__(self, space: _Optional[str] = ..., after_lsn: _Optional[int] = ..., snapshot_lsn: _Optional[int] = ..., batch_size: _Optional[int] = ..., include_embedding: _Optional[bool] = ..., filter: _Optional[_Union[Filter, _Mapping]] = ..., packed_embeddings: _Optional[bool] = ...) -> None: ...

class ExportResponse(_message.Message):
    __slots__ = ("memories", "snapshot_lsn", "more")
    MEMORIES_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_LSN_FIELD_NUMBER: _ClassVar[int]
    MORE_FIELD_NUMBER: _ClassVar[int]
    memories: _containers.RepeatedCompositeFieldContainer[Memory]
    snapshot_lsn: int
    more: bool
    def __init__(self, memories: _Optional[_Iterable[_Union[Memory, _Mapping]]] = ..., snapshot_lsn: _Optional[int] = ..., more: _Optional[bool] = ...) -> None: ...

class GetMemoriesRequest(_message.Message):
    __slots__ = ("space", "ids", "snapshot_lsn", "include_embedding", "packed_embeddings")
    SPACE_FIELD_NUMBER: _ClassVar[int]
    IDS_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_LSN_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_EMBEDDING_FIELD_NUMBER: _ClassVar[int]
    PACKED_EMBEDDINGS_FIELD_NUMBER: _ClassVar[int]
    space: str
    ids: _containers.RepeatedScalarFieldContainer[str]
    snapshot_lsn: int
    include_embedding: bool
    packed_embeddings: bool
    def __init__(self, space: _Optional[str] = ..., ids: _Optional[_Iterable[str]] = ..., snapshot_lsn: _Optional[int] = ..., include_embedding: _Optional[bool] = ..., packed_embeddings: _Optional[bool] = ...) -> None: ...

class GetMemoriesResponse(_message.Message):
    __slots__ = ("memories", "missing", "snapshot_lsn", "superseded")
    MEMORIES_FIELD_NUMBER: _ClassVar[int]
    MISSING_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_LSN_FIELD_NUMBER: _ClassVar[int]
    SUPERSEDED_FIELD_NUMBER: _ClassVar[int]
    memories: _containers.RepeatedCompositeFieldContainer[Memory]
    missing: _containers.RepeatedScalarFieldContainer[str]
    snapshot_lsn: int
    superseded: _containers.RepeatedCompositeFieldContainer[Superseded]
    def __init__(self, memories: _Optional[_Iterable[_Union[Memory, _Mapping]]] = ..., missing: _Optional[_Iterable[str]] = ..., snapshot_lsn: _Optional[int] = ..., superseded: _Optional[_Iterable[_Union[Superseded, _Mapping]]] = ...) -> None: ...

class Superseded(_message.Message):
    __slots__ = ("id", "superseded_by")
    ID_FIELD_NUMBER: _ClassVar[int]
    SUPERSEDED_BY_FIELD_NUMBER: _ClassVar[int]
    id: str
    superseded_by: str
    def __init__(self, id: _Optional[str] = ..., superseded_by: _Optional[str] = ...) -> None: ...

class ForgetRequest(_message.Message):
    __slots__ = ("space", "ids", "session_id", "filter")
    SPACE_FIELD_NUMBER: _ClassVar[int]
    IDS_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    space: str
    ids: _containers.RepeatedScalarFieldContainer[str]
    session_id: str
    filter: Filter
    def __init__(self, space: _Optional[str] = ..., ids: _Optional[_Iterable[str]] = ..., session_id: _Optional[str] = ..., filter: _Optional[_Union[Filter, _Mapping]] = ...) -> None: ...

class ForgetResponse(_message.Message):
    __slots__ = ("forgotten", "lsn")
    FORGOTTEN_FIELD_NUMBER: _ClassVar[int]
    LSN_FIELD_NUMBER: _ClassVar[int]
    forgotten: int
    lsn: int
    def __init__(self, forgotten: _Optional[int] = ..., lsn: _Optional[int] = ...) -> None: ...

class CompactRequest(_message.Message):
    __slots__ = ("space",)
    SPACE_FIELD_NUMBER: _ClassVar[int]
    space: str
    def __init__(self, space: _Optional[str] = ...) -> None: ...

class CompactResponse(_message.Message):
    __slots__ = ("purged", "segments_compacted", "log_bytes_before", "log_bytes_after", "checkpoint_lsn")
    PURGED_FIELD_NUMBER: _ClassVar[int]
    SEGMENTS_COMPACTED_FIELD_NUMBER: _ClassVar[int]
    LOG_BYTES_BEFORE_FIELD_NUMBER: _ClassVar[int]
    LOG_BYTES_AFTER_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_LSN_FIELD_NUMBER: _ClassVar[int]
    purged: int
    segments_compacted: int
    log_bytes_before: int
    log_bytes_after: int
    checkpoint_lsn: int
    def __init__(self, purged: _Optional[int] = ..., segments_compacted: _Optional[int] = ..., log_bytes_before: _Optional[int] = ..., log_bytes_after: _Optional[int] = ..., checkpoint_lsn: _Optional[int] = ...) -> None: ...
