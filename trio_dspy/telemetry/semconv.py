"""Attribute names of the OpenTelemetry GenAI semantic conventions.

Instrumentation uses these names so that any OpenTelemetry backend shows LM
calls, agents and tools the way it shows other GenAI frameworks. The
conventions (development status) suggest, per operation:

- LM call: span ``chat {model}``, kind CLIENT, ``gen_ai.operation.name = "chat"``.
- embeddings call: span ``embeddings {model}``, kind CLIENT,
  ``gen_ai.operation.name = "embeddings"``.
- module or agent run: span ``invoke_agent {name}``, kind INTERNAL,
  ``gen_ai.operation.name = "invoke_agent"``.
- tool call: span ``execute_tool {tool}``, kind INTERNAL,
  ``gen_ai.operation.name = "execute_tool"``.

Message contents (:data:`GEN_AI_INPUT_MESSAGES`, :data:`GEN_AI_OUTPUT_MESSAGES`,
:data:`GEN_AI_SYSTEM_INSTRUCTIONS`, tool arguments and results) are opt-in:
record them only when ``Settings.trace_content`` is on.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "ERROR_TYPE",
    "GEN_AI_AGENT_DESCRIPTION",
    "GEN_AI_AGENT_ID",
    "GEN_AI_AGENT_NAME",
    "GEN_AI_CONVERSATION_ID",
    "GEN_AI_EMBEDDINGS_DIMENSION_COUNT",
    "GEN_AI_INPUT_MESSAGES",
    "GEN_AI_OPERATION_NAME",
    "GEN_AI_OUTPUT_MESSAGES",
    "GEN_AI_OUTPUT_TYPE",
    "GEN_AI_PROVIDER_NAME",
    "GEN_AI_REQUEST_ENCODING_FORMATS",
    "GEN_AI_REQUEST_MAX_TOKENS",
    "GEN_AI_REQUEST_MODEL",
    "GEN_AI_REQUEST_SEED",
    "GEN_AI_REQUEST_STOP_SEQUENCES",
    "GEN_AI_REQUEST_STREAM",
    "GEN_AI_REQUEST_TEMPERATURE",
    "GEN_AI_REQUEST_TOP_P",
    "GEN_AI_RESPONSE_FINISH_REASONS",
    "GEN_AI_RESPONSE_ID",
    "GEN_AI_RESPONSE_MODEL",
    "GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK",
    "GEN_AI_SYSTEM_INSTRUCTIONS",
    "GEN_AI_TOOL_CALL_ARGUMENTS",
    "GEN_AI_TOOL_CALL_ID",
    "GEN_AI_TOOL_CALL_RESULT",
    "GEN_AI_TOOL_DESCRIPTION",
    "GEN_AI_TOOL_NAME",
    "GEN_AI_TOOL_TYPE",
    "GEN_AI_USAGE_INPUT_TOKENS",
    "GEN_AI_USAGE_OUTPUT_TOKENS",
    "OPERATION_CHAT",
    "OPERATION_EMBEDDINGS",
    "OPERATION_EXECUTE_TOOL",
    "OPERATION_INVOKE_AGENT",
    "PROVIDER_ANTHROPIC",
    "PROVIDER_OPENAI",
    "SERVER_ADDRESS",
    "SERVER_PORT",
]

# --- operation --------------------------------------------------------------
GEN_AI_OPERATION_NAME: Final = "gen_ai.operation.name"
"""What the span does: one of the ``OPERATION_*`` values."""
OPERATION_CHAT: Final = "chat"
OPERATION_EMBEDDINGS: Final = "embeddings"
OPERATION_INVOKE_AGENT: Final = "invoke_agent"
OPERATION_EXECUTE_TOOL: Final = "execute_tool"

GEN_AI_PROVIDER_NAME: Final = "gen_ai.provider.name"
"""Who serves the model, e.g. :data:`PROVIDER_OPENAI` (the ``provider/`` part of ``LM``'s model)."""
PROVIDER_OPENAI: Final = "openai"
PROVIDER_ANTHROPIC: Final = "anthropic"

GEN_AI_CONVERSATION_ID: Final = "gen_ai.conversation.id"
GEN_AI_OUTPUT_TYPE: Final = "gen_ai.output.type"
"""``"text"`` or ``"json"``: what the request asked the model to produce."""

# --- request ----------------------------------------------------------------
GEN_AI_REQUEST_MODEL: Final = "gen_ai.request.model"
GEN_AI_REQUEST_MAX_TOKENS: Final = "gen_ai.request.max_tokens"
GEN_AI_REQUEST_TEMPERATURE: Final = "gen_ai.request.temperature"
GEN_AI_REQUEST_TOP_P: Final = "gen_ai.request.top_p"
GEN_AI_REQUEST_SEED: Final = "gen_ai.request.seed"
GEN_AI_REQUEST_STOP_SEQUENCES: Final = "gen_ai.request.stop_sequences"
GEN_AI_REQUEST_STREAM: Final = "gen_ai.request.stream"
"""``True`` when the completion was asked for as a stream."""
GEN_AI_REQUEST_ENCODING_FORMATS: Final = "gen_ai.request.encoding_formats"
"""The encodings an embeddings request asks for (``("float",)``)."""
GEN_AI_EMBEDDINGS_DIMENSION_COUNT: Final = "gen_ai.embeddings.dimension.count"
"""The number of components of each vector an embeddings call returned."""

# --- response ---------------------------------------------------------------
GEN_AI_RESPONSE_MODEL: Final = "gen_ai.response.model"
GEN_AI_RESPONSE_ID: Final = "gen_ai.response.id"
GEN_AI_RESPONSE_FINISH_REASONS: Final = "gen_ai.response.finish_reasons"
"""A sequence of strings, one per choice (``("stop",)``)."""
GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK: Final = "gen_ai.response.time_to_first_chunk"
"""Seconds from the start of a streamed call to its first chunk of the completion."""

# --- usage ------------------------------------------------------------------
GEN_AI_USAGE_INPUT_TOKENS: Final = "gen_ai.usage.input_tokens"
GEN_AI_USAGE_OUTPUT_TOKENS: Final = "gen_ai.usage.output_tokens"

# --- agents and tools -------------------------------------------------------
GEN_AI_AGENT_NAME: Final = "gen_ai.agent.name"
GEN_AI_AGENT_ID: Final = "gen_ai.agent.id"
GEN_AI_AGENT_DESCRIPTION: Final = "gen_ai.agent.description"
GEN_AI_TOOL_NAME: Final = "gen_ai.tool.name"
GEN_AI_TOOL_CALL_ID: Final = "gen_ai.tool.call.id"
GEN_AI_TOOL_DESCRIPTION: Final = "gen_ai.tool.description"
GEN_AI_TOOL_TYPE: Final = "gen_ai.tool.type"
"""``"function"`` for tools implemented in the application."""

# --- content (opt-in: may hold personal data) -------------------------------
GEN_AI_INPUT_MESSAGES: Final = "gen_ai.input.messages"
"""The chat history sent to the model, as a JSON string."""
GEN_AI_OUTPUT_MESSAGES: Final = "gen_ai.output.messages"
"""The messages the model returned, as a JSON string."""
GEN_AI_SYSTEM_INSTRUCTIONS: Final = "gen_ai.system_instructions"
GEN_AI_TOOL_CALL_ARGUMENTS: Final = "gen_ai.tool.call.arguments"
GEN_AI_TOOL_CALL_RESULT: Final = "gen_ai.tool.call.result"

# --- general ----------------------------------------------------------------
SERVER_ADDRESS: Final = "server.address"
SERVER_PORT: Final = "server.port"
ERROR_TYPE: Final = "error.type"
"""Set automatically when an exception escapes a span: the exception class's
qualified name, or ``"cancelled"``."""
