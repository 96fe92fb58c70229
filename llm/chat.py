"""Chat and instruction models: prompts rendered with the tokenizer's chat template.

With `task.chat_template = true` every prompt is a conversation: a plain prompt text becomes one
user message (after an optional system message, `task.system_prompt`), and a data row may give the
prompt directly as a list of {role, content} messages (a "conversational row"). The conversation
travels inside `Prompt.text` as a `ChatText`: a `str` whose value is the last user message's text
(so a task's `check` and every log that reads `prompt.text` keep working) and whose `messages`
attribute is the whole conversation. `llm.rollout.encode_prompt` sees the `messages` and renders
them here:

    ids = tok.encode(tokenizer.apply_chat_template(messages, add_generation_prompt=True,
                                                   tokenize=False))

(no BOS of our own: the template writes whatever special tokens the model expects; rendering then
encoding without special tokens gives the ids `tokenize=True` gives). A tokenizer without a chat
template makes chat_template = true a one-line error naming the field.

`chat_task(task, system_prompt)` turns any task's prompts into conversations; `llm.tasks.make_task`
applies it when task.chat_template is set (a custom task handed to `llm.train.train` can call it).
"""

from __future__ import annotations

import functools

ROLES = ("system", "user", "assistant", "tool")
FIELD = "task.chat_template"


class ChatText(str):
    """A prompt text carrying a conversation: str(self) is the last user message (or, with no user
    message, the last message); `messages` a tuple of {"role", "content"} dicts."""

    messages: tuple

    def __new__(cls, messages, text: str | None = None):
        messages = tuple({"role": m["role"], "content": m["content"]} for m in messages)
        if text is None:
            users = [m["content"] for m in messages if m["role"] == "user"] or [m["content"] for m in messages]
            text = users[-1] if users else ""
        self = super().__new__(cls, text)
        self.messages = messages
        return self

    def __reduce__(self):  # pickles with its conversation (str's default would drop it)
        return ChatText, (self.messages, str(self))

    def __repr__(self) -> str:
        return f"ChatText({list(self.messages)!r})"


def message_problem(value) -> str | None:
    """Why `value` is not a non-empty list of {role, content} messages (role in ROLES, content a
    string, at least one user message), or None when it is one."""
    if not isinstance(value, (list, tuple)) or not value:
        return "not a non-empty list of messages"
    for i, m in enumerate(value, 1):
        if not isinstance(m, dict):
            return f"message {i} is not an object with 'role' and 'content'"
        if m.get("role") not in ROLES:
            return f"message {i} has role {m.get('role')!r} (allowed: {', '.join(ROLES)})"
        if not isinstance(m.get("content"), str):
            return f"message {i} has no string 'content'"
    if not any(m["role"] == "user" for m in value):
        return "no message has role 'user'"
    return None


def as_chat(text, system_prompt: str = "") -> ChatText:
    """`text` as a conversation: a ChatText keeps its messages, a plain string becomes one user
    message; `system_prompt` (when non-empty) is put first unless a system message is there."""
    if isinstance(text, ChatText):
        messages, shown = list(text.messages), str(text)
    else:
        messages, shown = [{"role": "user", "content": str(text)}], str(text)
    if system_prompt and not any(m["role"] == "system" for m in messages):
        messages.insert(0, {"role": "system", "content": system_prompt})
    return ChatText(messages, shown)


def _chat_prompts(prompts_fn, system_prompt: str, split: str):
    from .tasks.base import Prompt
    return [Prompt(p.id, as_chat(p.text, system_prompt), p.answer) for p in prompts_fn(split)]


def chat_task(task, system_prompt: str = ""):
    """Make `task.prompts(split)` return conversations (ChatText texts); ids and answers unchanged.
    The task object is modified in place (its class, registry entry and checks stay as they are)
    and returned; applying it twice does not nest."""
    inner = getattr(task.prompts, "_chat_inner", task.prompts)
    wrapped = functools.partial(_chat_prompts, inner, system_prompt)
    wrapped._chat_inner = inner
    task.prompts = wrapped
    return task


def has_chat_template(tok) -> bool:
    """True when tokenizer `tok` (an llm tokenizer) can render a chat template."""
    return bool(getattr(tok, "chat_template", None)) and callable(getattr(tok, "render_chat", None))


def check_tokenizer(tok, chat_template: bool = True) -> None:
    """ValueError naming task.chat_template when it is set and `tok` has no chat template."""
    if chat_template and not has_chat_template(tok):
        raise ValueError(f"{FIELD} = True is invalid; allowed: false for a tokenizer without a chat "
                         f"template ({type(tok).__name__} has none)")


def encode_chat(tok, text: ChatText) -> list[int]:
    """Prompt ids of conversation `text`: the chat template rendered with a generation prompt,
    then encoded without adding special tokens (the template writes them)."""
    check_tokenizer(tok)
    return tok.encode(tok.render_chat(list(text.messages)))
