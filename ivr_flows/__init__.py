"""IVR flows: a YAML flow language, validated with line-precise errors, versioned in MongoDB, hot-reloaded,
run on calls by ``FlowExecutor`` with TTS prompts. The language is documented in ``ivr_flows/README.md``.

    registry = FlowRegistry(FlowStore(db), bus); await registry.start()     # a process that runs calls
    executor = FlowExecutor(prompts=PromptRenderer(cache_dir, prompts_dir),
                            analyzer=asr.nlu.Analyzer(), queues=desktop.gateway,
                            tickets=TicketServiceGateway(...),
                            speech=AsrSpeechRecognizer(build_recognizer(settings)), http=session,
                            recordings_dir=...)
    context = await executor.run(registry.current("main"), call)     # any telephony.api.Call
                                                                        # (PjsuaCall, FakeCall)
Steps and ``call.queued`` go through ``call.log_event`` (the call's ordered journal on a real call) unless
an ``events`` sink is given. ``ivr_flows.line`` serves flows on the telephony workers.
"""

from ivr_flows.errors import FlowError, FlowInvalid, NoActiveFlow
from ivr_flows.events import CallEvent, CallEventSink, RecordingSink
from ivr_flows.executor import FlowExecutor
from ivr_flows.fake_call import FakeCall
from ivr_flows.gateways import (
    InMemoryQueueGateway,
    QueueGateway,
    RecordingTicketGateway,
    TicketGateway,
    TicketServiceGateway,
)
from ivr_flows.models import (
    CallbackRequest,
    CallContext,
    FlowSummary,
    FlowVersion,
    IntentRecord,
    QueueRequest,
    StepRecord,
    TicketReceipt,
    TicketRequest,
)
from ivr_flows.registry import FlowRegistry
from ivr_flows.service import FlowService, create_flow_service
from ivr_flows.store import FlowStore
from ivr_flows.tts import PromptError, PromptRenderer
from ivr_flows.understanding import (
    AsrSpeechRecognizer,
    Heard,
    IntentAnalyzer,
    ScriptedSpeech,
    SpeechRecognizer,
)
from ivr_flows.validation import Flow, Revision, check_flow, parse_flow

__all__ = [
    "AsrSpeechRecognizer",
    "CallContext",
    "CallEvent",
    "CallEventSink",
    "CallbackRequest",
    "FakeCall",
    "Flow",
    "FlowError",
    "FlowExecutor",
    "FlowInvalid",
    "FlowRegistry",
    "FlowService",
    "FlowStore",
    "FlowSummary",
    "FlowVersion",
    "Heard",
    "InMemoryQueueGateway",
    "IntentAnalyzer",
    "IntentRecord",
    "NoActiveFlow",
    "PromptError",
    "PromptRenderer",
    "QueueGateway",
    "QueueRequest",
    "RecordingSink",
    "RecordingTicketGateway",
    "Revision",
    "ScriptedSpeech",
    "SpeechRecognizer",
    "StepRecord",
    "TicketGateway",
    "TicketReceipt",
    "TicketRequest",
    "TicketServiceGateway",
    "check_flow",
    "create_flow_service",
    "parse_flow",
]
