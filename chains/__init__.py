"""hfchain's LangChain runnables: build a backend from settings, then the chains over it."""

from chains.agent.runner import AgentInput, build_agent
from chains.backends import Backend, build_backend
from chains.chat import ChatInput, build_chat_chain
from chains.classify import ClassifyInput, build_classify_chain, build_classify_methods
from chains.generate import GenerateInput, build_generate_chain
from chains.settings import Settings, get_settings, load_settings
from chains.summarize import SummarizeInput, build_summarize_chain

__all__ = [
    "AgentInput",
    "Backend",
    "ChatInput",
    "ClassifyInput",
    "GenerateInput",
    "Settings",
    "SummarizeInput",
    "build_agent",
    "build_backend",
    "build_chat_chain",
    "build_classify_chain",
    "build_classify_methods",
    "build_generate_chain",
    "build_summarize_chain",
    "get_settings",
    "load_settings",
]
