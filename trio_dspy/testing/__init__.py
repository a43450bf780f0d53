"""Test doubles: a scripted in-process model and a simulated HTTP server."""

from .dummy import DummyLM
from .sim_answers import SimReply, SimToolCall
from .sim_config import Fault, Latency, SimConfig, keyword_script
from .sim_server import SimServer, SimStats, serve_sim
from .sim_small_model import small_model_script
from .sim_task import InstructionTask
from .sim_values import schema_value

__all__ = [
    "DummyLM",
    "Fault",
    "InstructionTask",
    "Latency",
    "SimConfig",
    "SimReply",
    "SimServer",
    "SimStats",
    "SimToolCall",
    "keyword_script",
    "schema_value",
    "serve_sim",
    "small_model_script",
]
