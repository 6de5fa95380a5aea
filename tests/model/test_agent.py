"""The agent over the embedded model, and tools through a chat template that renders them itself."""

import asyncio
import copy

import jsonschema
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.tools import tool

from chains.agent.runner import build_agent
from chains.classify import build_classify_chain, build_classify_methods
from chains.settings import load_settings
from chains.summarize import build_summarize_chain
from chains.tokens import Tokens

# a template in the style of Qwen2.5's: tools in the system turn, calls and results rendered by the template
TOOLS_TEMPLATE = """{%- if tools %}<|im_start|>system
You may call these tools:
<tools>{% for tool in tools %}
{{ tool | tojson }}{% endfor %}
</tools><|im_end|>
{% endif %}{%- for message in messages %}{%- if message.role == "tool" %}<|im_start|>user
<tool_response>
{{ message.content }}
</tool_response><|im_end|>
{% elif message.tool_calls %}<|im_start|>assistant
{% for call in message.tool_calls %}<tool_call>
{{ {"name": call.function.name, "arguments": call.function.arguments} | tojson }}
</tool_call>{% endfor %}<|im_end|>
{% else %}<|im_start|>{{ message.role }}
{{ message.content }}<|im_end|>
{% endif %}{%- endfor %}{%- if add_generation_prompt %}<|im_start|>assistant
{% endif %}"""

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
CALL = {"name": "get_weather", "args": {"city": "Paris"}, "id": "call_1", "type": "tool_call"}


def test_a_template_with_tools_renders_them_and_the_steps(embedded_backend):
    engine = embedded_backend.engine
    tokenizer = copy.deepcopy(engine.tokenizer)
    tokenizer.chat_template = TOOLS_TEMPLATE
    stock, engine._tokens = engine._tokens, Tokens(tokenizer)
    try:
        assert engine.tokens.renders_tools and not stock.renders_tools  # SmolLM2's own template has none
        messages = [
            HumanMessage("Weather in Paris?"),
            AIMessage("", tool_calls=[CALL]),
            ToolMessage("sunny", tool_call_id="call_1"),
        ]
        ids, plan = embedded_backend.chat_model._prepare(messages, {"tools": [WEATHER]})
        prompt = tokenizer.decode(ids)
    finally:
        engine._tokens = stock
    assert "You may call these tools:" in prompt and prompt.count('"get_weather"') == 2  # definition, call
    assert "<tool_response>\nsunny\n</tool_response>" in prompt
    assert "Call a tool" not in prompt  # hfchain's own tool block (prompts/tools_system.txt) is not added
    assert plan.grammar is not None  # the reply is still constrained


@tool
def multiply(a: int, b: int) -> int:
    """Multiply two whole numbers."""
    return a * b


@tool
def add(a: int, b: int) -> int:
    """Add two whole numbers."""
    return a + b


def agent(backend, tmp_path, **overrides):
    from chains.sessions import SessionStore

    settings = load_settings(**{"agent_tool_choice": "required", "agent_max_steps": 3, **overrides})
    methods = build_classify_methods(backend)
    sessions = SessionStore(f"sqlite:///{tmp_path / 'agent.db'}")
    built = build_agent(
        backend, settings, build_summarize_chain(backend), build_classify_chain(methods), sessions
    )
    return built, sessions


def test_every_step_of_a_real_run_is_a_valid_call_or_an_answer(embedded_backend, tmp_path):
    tools = "tests.model.test_agent:multiply,tests.model.test_agent:add"
    runner, sessions = agent(embedded_backend, tmp_path, agent_tools=tools)
    config = {"configurable": {"max_new_tokens": 48}}
    question = {"messages": [{"role": "user", "content": "What is 12 * 7?"}], "session_id": "m1"}
    reply = asyncio.run(runner.ainvoke(question, config))
    steps = sessions.history("m1")[1:]
    assert len(steps) >= 3 and reply.response_metadata["agent_steps"] >= 2  # call, result, ..., answer
    schemas = {t.name: t.tool_call_schema.model_json_schema() for t in runner.toolbox.tools}
    calls = [c for m in steps if isinstance(m, AIMessage) for c in m.tool_calls]
    assert calls, "tool_choice=required: the first step calls a tool"
    for call in calls:
        jsonschema.validate(call["args"], schemas[call["name"]])
    results = [m for m in steps if isinstance(m, ToolMessage)]
    assert len(results) == len(calls)  # every call got its result (a failure is a result too)
    assert isinstance(steps[-1], AIMessage) and not steps[-1].tool_calls  # the run ends in an answer
    sessions.close()


def test_auto_calls_the_tool_a_question_needs_and_answers_a_greeting(embedded_backend, tmp_path):
    runner, sessions = agent(embedded_backend, tmp_path, agent_tool_choice="auto", agent_tools="calculator")
    config = {"configurable": {"max_new_tokens": 48}}
    for session, text in (("math", "What is 100 - 37?"), ("hello", "Hello there")):
        question = {"messages": [{"role": "user", "content": text}], "session_id": session}
        asyncio.run(runner.ainvoke(question, config))
    math, hello = sessions.history("math")[1:], sessions.history("hello")[1:]
    assert [c["name"] for c in math[0].tool_calls] == ["calculator"] and isinstance(math[1], ToolMessage)
    assert isinstance(math[-1], AIMessage) and not math[-1].tool_calls  # answered with the result
    assert len(hello) == 1 and not hello[0].tool_calls and hello[0].text
    sessions.close()
