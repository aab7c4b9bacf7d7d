"""Child process for the kill -9 test of the whole app: the chat app, enrolled in a study, driven by Textual's
pilot, with another studyapp command run beside it.

    python -m tests.chat.app_child DATA_DIR LLM_BASE_URL SERVER_URL CODE

It enrolls (a memory keyring stands in for the OS keyring), agrees to every category, opens the app and
sends one message. Once the reply is complete and the record pump (its own connection to the database) is
idle, it prints ``turn 1`` and waits for a line on stdin: meanwhile the test runs another studyapp command.
Then it sends a second message, prints ``turn 2`` once the reply is complete, and waits to be killed.
"""

from __future__ import annotations

import asyncio
import sys

import keyring

from studyapp.context import AppContext
from studyapp.llm.openai_compat import OpenAICompatModel
from studyapp.privacy.consent import ConsentService
from studyapp.store.studies import StudyStore
from studyapp.study.protocol import protocol_from_dict
from studyapp.sync.enroll import enroll
from studyapp.tui.app import StudyApp
from studyapp.tui.widgets.composer import Composer
from studyapp.tui.widgets.message_view import MessageView
from tests.support.keyring import MemoryKeyring
from tests.support.scripted_llm import DEFAULT_MODEL
from tests.tui.helpers import wait_for


async def main(data_dir: str, llm_url: str, server_url: str, code: str) -> None:
    keyring.set_keyring(MemoryKeyring())
    app_ctx = AppContext.create(data_dir)
    app_ctx.check_integrity = False  # as `studyapp` opens the app: the full check runs after the first frame
    await enroll(app_ctx.db, server_url, code)
    study = StudyStore(app_ctx.db).current()
    assert study is not None
    protocol = protocol_from_dict(study.protocol)
    ConsentService(app_ctx.db).grant(protocol, list(protocol.categories))
    app = StudyApp(app_ctx, model_factory=lambda: OpenAICompatModel(llm_url, DEFAULT_MODEL))

    async with app.run_test(size=(110, 40)) as pilot:
        for n, text in ((1, "my first message"), (2, "my second message")):
            app.query_one(Composer).text = text  # set at once: typing key by key costs seconds
            await pilot.press("enter")
            await wait_for(pilot, lambda n=n: [v.message.status for v in app.screen.query(MessageView)] ==
                           ["complete"] * 2 * n, what=f"reply {n}", timeout=30)
            # The pump's worker has opened its own connection to the database by now.
            await app.services.participation.flush()
            print(f"turn {n}", flush=True)
            await asyncio.to_thread(sys.stdin.readline)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5]))
