"""Grammars (llguidance) that constrain a row's tokens: JSON schemas, tool calls, regexes.

A grammar is a Lark text; `GrammarBook` compiles each one once (bounded LRU) and hands every row its own
copy of the matcher, wrapped in a Constraint with its budget and repetition guards (constraint.py). Masks
are applied with a plain bit-unpack, never llguidance's torch helpers (torch.compile'd: 20 s on the first
CPU call).
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from typing import Any

from chains.errors import InvalidInput
from chains.tools.closing import Vocabulary
from chains.tools.constraint import Constraint

CALL_BEGIN, CALL_END = "<tool_call>\n", "\n</tool_call>"
# free text that never writes a tool tag of its own (a call starts only through the call grammar): a small
# model otherwise goes on to write the tool's result itself, as <tool_response>, <tool_response > ...
TEXT = r"/(.|\n)*/ & ~/(.|\n)*<\/?tool(.|\n)*/"
# compact JSON: a small model given free whitespace pretty-prints and rambles
COMPACT = {"whitespace_flexible": False, "key_separator": ": ", "item_separator": ", "}


def compact(schema: dict) -> dict:
    """The schema with llguidance's compact-JSON options."""
    return {**schema, "x-guidance": COMPACT}


def json_grammar(schema: dict | None) -> str:
    """Only JSON valid for `schema` (any JSON object when None)."""
    schema = schema if schema is not None else {"type": "object"}
    return f"%llguidance {{}}\nstart: %json {json.dumps(compact(schema))}\n"


def text_grammar() -> str:
    """Free text without tool-result tags (a reply in a conversation that has tools or their results)."""
    return f"%llguidance {{}}\nstart: REPLY\nREPLY: {TEXT}\n"


def regex_grammar(pattern: str) -> str:
    """Only text matching the regular expression `pattern`."""
    return f"%llguidance {{}}\nstart: /{_lark_regex(pattern)}/\n"


MAPS = frozenset({"properties", "$defs", "definitions", "patternProperties"})
# strings that set their own rules are left as they are
STRING_RULES = frozenset({"minLength", "maxLength", "enum", "const", "pattern", "format"})


def closed(schema: object) -> object:
    """The schema with every object that lists its properties closed to others, unless it says otherwise
    (a tool's arguments are the ones it declares: a small model otherwise invents more), and every string
    that sets no rule of its own at least one character long."""
    if isinstance(schema, list):
        return [closed(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    result = {key: closed(value) for key, value in schema.items() if key not in MAPS}
    for key in MAPS & schema.keys():  # name -> schema mappings: the names are not schema keywords
        value = schema[key]
        result[key] = {k: closed(v) for k, v in value.items()} if isinstance(value, dict) else value
    if isinstance(schema.get("properties"), dict) and "additionalProperties" not in schema:
        result["additionalProperties"] = False
    if schema.get("type") == "string" and not STRING_RULES & schema.keys():
        result["minLength"] = 1  # a small model otherwise closes an argument's string at once: ""
    return result


def call_schema(tool: dict) -> dict:
    """The JSON of one call to `tool` (an OpenAI function tool): its name and schema-valid arguments."""
    function = tool["function"]
    arguments = closed(function.get("parameters") or {"type": "object", "properties": {}})
    return {
        "type": "object",
        "properties": {"name": {"const": function["name"]}, "arguments": arguments},
        "required": ["name", "arguments"],
        "additionalProperties": False,
    }


def tools_grammar(tools: list[dict], forced: bool, parallel: bool = False) -> str:
    """Tool calls as `<tool_call>\\n{"name", "arguments"}\\n</tool_call>`; the reply ends after its call(s).

    forced: the reply is a call and nothing else; otherwise free text, in which a call, once begun, can
    only be a valid one. parallel: several calls may follow one another (a small model given the choice
    repeats itself, so only when asked for).
    """
    calls = compact({"anyOf": [call_schema(t) for t in tools]})
    if not forced:
        import llguidance

        tag = llguidance.StructTag(trigger=CALL_BEGIN.strip(), begin=CALL_BEGIN, grammar=calls, end=CALL_END)
        grammar = llguidance.StructTag.to_grammar([tag], assume_special=False)
        calls_rule = '(tag_0 ("\\n" tag_0)*)' if parallel else "tag_0"
        grammar = grammar.replace("TAG_TEXT: /(.|\\n)*/", f"TAG_TEXT: {TEXT}", 1)
        return grammar.replace("start: (tag_0)* tag_end", f"start: {calls_rule} | tag_end", 1)
    repeat = '("\\n" call)*' if parallel else ""
    call = f'"{_escape(CALL_BEGIN)}" %json {json.dumps(calls)} "{_escape(CALL_END)}"'
    return f"%llguidance {{}}\nstart: call {repeat}\ncall: {call}\n"


def grammar_kind(grammar: str) -> str:
    """What a grammar text writes: "tools" (calls, maybe after text), "text", "json" or "regex"."""
    if CALL_BEGIN.strip() in grammar:
        return "tools"
    if grammar.startswith(text_grammar()):
        return "text"
    return "json" if "start: %json" in grammar else "regex"


def _escape(text: str) -> str:
    return json.dumps(text)[1:-1]


def _lark_regex(pattern: str) -> str:
    return pattern.replace("/", "\\/")


class GrammarBook:
    """Compiled grammars for one tokenizer, each compiled once; `matcher()` gives a fresh copy."""

    def __init__(self, tokenizer: Any, vocab_size: int, capacity: int = 64) -> None:
        self.tokenizer, self.vocab_size, self.capacity = tokenizer, vocab_size, capacity
        self._info: Any = None
        self._vocab: Vocabulary | None = None
        self._compiled: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()
        self.compiled = self.hits = 0  # counts, for metrics and tests

    def _tokenizer_info(self) -> Any:
        if self._info is None:
            import llguidance.hf

            self._info = llguidance.hf.from_tokenizer(self.tokenizer, n_vocab=self.vocab_size)
        return self._info

    def constraint(self, grammar: str, budget: bool = True, repetition: bool = True) -> Constraint:
        """A row's constraint for `grammar`, with its guards (InvalidInput if it does not compile)."""
        matcher = self.matcher(grammar)
        return Constraint(matcher, self.vocabulary(), grammar_kind(grammar), budget, repetition)

    def vocabulary(self) -> Vocabulary:
        """The token bytes and closing candidates of this tokenizer (made on first use)."""
        if self._vocab is None:
            info = self._tokenizer_info()
            self._vocab = Vocabulary(info, self.vocab_size, {info.eos_token})
        return self._vocab

    def matcher(self, grammar: str) -> Any:
        """A new matcher for `grammar`, from the compiled copy (compiled now if unseen)."""
        import llguidance

        with self._lock:
            template = self._compiled.get(grammar)
            if template is not None:
                self._compiled.move_to_end(grammar)
                self.hits += 1
                return template.deep_copy()
            try:
                template = llguidance.LLMatcher(self._tokenizer_info(), grammar)
            except BaseException as error:  # a Rust panic is a BaseException: a bad schema, not a crash
                if isinstance(error, KeyboardInterrupt | SystemExit):
                    raise
                raise InvalidInput(f"the schema or grammar cannot be used: {error}") from None
            if template.is_error():
                raise InvalidInput(f"the schema or grammar cannot be used: {template.get_error()}")
            self.compiled += 1
            self._compiled[grammar] = template
            if len(self._compiled) > self.capacity:
                self._compiled.popitem(last=False)
            return template.deep_copy()
