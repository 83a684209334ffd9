"""Chat messages -> tokens for multi-turn episodes, with the tokenizer's own chat template.

Sampled tokens are never re-tokenised (that would change what the policy actually sampled).
Only the text *between* two sampled replies is tokenised: the end of the assistant turn the
template writes after the reply, then the environment's messages, then the opening of the
next assistant turn. That text is the difference between two renderings of the conversation,
so it is exactly what the template would have produced; templates for which one rendering is
not a prefix of the next (some drop earlier reasoning) are refused with a clear error.

**The rule** (tests/test_real_chat.py, on SmolLM2-135M-Instruct's template and the tiny one):
an episode's text is the template's rendering of the whole conversation (opening with the tools
described in it, every reply, every tool result and user turn), cut where the episode stopped:
after the last sampled token (for ChatML, ``<|im_start|>role\n...<|im_end|>\n``, that drops the
template's final ``\n``), or after the next ``<|im_start|>assistant\n`` when the context filled
up (``add_generation_prompt=True``, nothing cut). Its tokens are the ids of
``tokenizer.apply_chat_template(conversation)``, the same cut, whenever each reply's sampled
tokens are the tokenizer's own encoding of its text and the reply does not start with
whitespace: the template's ``assistant\n`` and a reply's leading space are one token (``"\n "``)
in one pass, and the episode keeps the two tokens the policy sampled.
The EOS that ends a reply is sampled, so it is left out of the template's closing; when the
policy ended with another EOS (a generation_config one, e.g. Qwen's ``<|endoftext|>``) the
template's own closing follows it, unsampled. A template's default system prompt (SmolLM2's
"You are a helpful AI assistant named SmolLM..." when there is no system message) is part of
every rendering, so it is in the opening like any other template text.
"""

from __future__ import annotations

from typing import Sequence

from rlft.types import Message


class TemplateError(ValueError):
    """The tokenizer's chat template cannot be used for multi-turn episodes."""


class ChatRenderer:
    def __init__(self, tokenizer, fmt):
        self.tokenizer, self.fmt = tokenizer, fmt
        assert tokenizer.chat_template, "multi-turn episodes need a tokenizer with a chat template"

    def text(self, messages: Sequence[Message], tools: list[dict], generation_prompt: bool) -> str:
        return self.tokenizer.apply_chat_template(
            list(messages), tools=(tools or None) if self.fmt.template_tools else None,
            tokenize=False, add_generation_prompt=generation_prompt,
        )

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False)

    def with_tool_text(self, messages: list[Message], tools: list[dict]) -> list[Message]:
        """The compact format lists the tools in the system message; hermes leaves it to the template."""
        described = self.fmt.describe(tools) if tools else ""
        if not described:
            return list(messages)
        if messages and messages[0]["role"] == "system":
            return [{"role": "system", "content": messages[0]["content"] + "\n\n" + described}, *messages[1:]]
        return [{"role": "system", "content": described}, *messages]

    def initial(self, messages: list[Message], tools: list[dict]) -> tuple[list[Message], list[int]]:
        """The conversation as the model sees it and its tokens, ready for the first reply."""
        shown = self.with_tool_text(messages, tools)
        return shown, self.encode(self.text(shown, tools, True))

    def between(
        self, history: list[Message], reply: str, new: list[Message], tools: list[dict], sampled_eos: bool | str
    ) -> list[int]:
        """Tokens after a sampled ``reply`` up to the next reply: the turn's closing (minus the
        EOS the policy sampled itself), the environment's ``new`` messages, the next opening.
        ``sampled_eos``: the text of the EOS token the reply ended with (any of the model's EOS
        ids), True for the tokenizer's ``eos_token``, False when it ended without one."""
        before = self.text(history, tools, True)
        said = self.text([*history, {"role": "assistant", "content": reply}], tools, False)
        after = self.text([*history, {"role": "assistant", "content": reply}, *new], tools, True)
        if not (said.startswith(before + reply) and after.startswith(said)):
            raise TemplateError(
                "the chat template does not render a conversation as a prefix of its continuation, so "
                "multi-turn token masks cannot be built; fix: use a template without history rewriting"
            )
        closing = said[len(before) + len(reply):]
        eos = (self.tokenizer.eos_token or "") if sampled_eos is True else (sampled_eos or "")
        if eos and closing.startswith(eos):  # the policy wrote the closing's first token itself
            closing = closing[len(eos):]
        return self.encode(closing + after[len(said):])
