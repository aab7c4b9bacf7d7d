"""Child process for the kill -9 test: sends one message and reports each piece of the reply as it lands."""

from __future__ import annotations

import asyncio
import sys

from studyapp.chat import ChatService, ReplyDelta
from studyapp.llm.openai_compat import OpenAICompatModel
from studyapp.store.conversations import ConversationStore
from studyapp.store.db import open_database


async def main(db_path: str, base_url: str) -> None:
    store = ConversationStore(open_database(db_path))
    service = ChatService(store, lambda: OpenAICompatModel(base_url, "scripted-model"), flush_interval=0.0)
    received = ""
    async for event in service.send(None, "please write a long answer"):
        if isinstance(event, ReplyDelta):
            received += event.text
            print(f"received {received}", flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
