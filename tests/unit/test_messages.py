"""Message conversion: OpenAI-style and LangChain-serialised dicts."""

import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from pydantic import ValidationError

from chains.chat import ChatInput
from chains.messages import text_of, to_chat_dicts, with_system_prompt


def test_openai_and_langchain_dicts_become_messages():
    value = ChatInput.model_validate(
        {
            "messages": [
                {"role": "system", "content": "be brief"},
                {"type": "human", "content": "hi"},
                {"role": "assistant", "content": "hello"},
                {"role": "user", "content": "again"},
            ]
        }
    )
    assert [type(m) for m in value.messages] == [SystemMessage, HumanMessage, AIMessage, HumanMessage]


def test_chat_dicts_for_the_template():
    messages = [SystemMessage("s"), HumanMessage("u"), AIMessage("a")]
    assert to_chat_dicts(messages) == [
        {"role": "system", "content": "s"},
        {"role": "user", "content": "u"},
        {"role": "assistant", "content": "a"},
    ]


def test_multipart_content_keeps_text_parts():
    message = HumanMessage(content=[{"type": "text", "text": "a"}, "b"])
    assert text_of(message) == "ab"


@pytest.mark.parametrize(
    "messages",
    [
        [],
        "hi",
        [{"role": "wizard", "content": "x"}],
        [{"content": "no role"}],
        [{"role": "function", "content": "x", "name": "f"}],  # tool messages are served now
    ],
)
def test_bad_messages_are_refused(messages):
    with pytest.raises(ValidationError):
        ChatInput.model_validate({"messages": messages})


def test_unknown_input_keys_are_refused():
    with pytest.raises(ValidationError):
        ChatInput.model_validate({"messages": [{"role": "user", "content": "x"}], "extra": 1})


def test_default_system_prompt_only_when_none_given():
    assert isinstance(with_system_prompt([HumanMessage("x")], "sys")[0], SystemMessage)
    own = [SystemMessage("mine"), HumanMessage("x")]
    assert with_system_prompt(own, "sys") == own
    assert with_system_prompt([HumanMessage("x")], None) == [HumanMessage("x")]
