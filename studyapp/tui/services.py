"""What the screens call: one object wiring the store, the chat service and the model settings.

Screens get this object instead of reaching for the database or the network themselves.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import replace
from functools import partial
from typing import TYPE_CHECKING

from studyapp.chat import ChatService
from studyapp.context import AppContext
from studyapp.domain import Conversation, Message
from studyapp.llm.base import ChatModel
from studyapp.llm.config import ModelSettings
from studyapp.llm.factory import make_model
from studyapp.participation import Participation
from studyapp.personalize.extract import ExtractionResult
from studyapp.personalize.generate import built_with_memory
from studyapp.personalize.memory import MemoryService
from studyapp.personalize.pipeline import Personalization
from studyapp.personalize.select import SelectionResult
from studyapp.store.comparisons import ComparisonStore
from studyapp.store.conversations import ConversationStore
from studyapp.store.memory import MemoryStore
from studyapp.store.questions import QuestionStore
from studyapp.study.asking import Asking
from studyapp.study.comparison import ComparisonRunner
from studyapp.study.labeling import LabelingPlan
from studyapp.study.models import ADOPTED_KEY, adopted_marker, header_role, role_settings, study_assistant
from studyapp.study.protocol import ModelSpec
from studyapp.study.roles import note_outcome, role_problems
from studyapp.study.service import StudyService
from studyapp.turns import TurnController

if TYPE_CHECKING:
    from studyapp.secrets import KeyringStatus

# The keyring loads only when used (the settings screen): not at start.

# Set once the app has started on this database (the first start welcomes and offers a local model server).
STARTED_KEY = "app.started"


class Services:
    def __init__(self, app_ctx: AppContext, *, model_factory: Callable[[], ChatModel] | None = None,
                 recover: bool = True) -> None:
        """``recover``: end what a crashed run left open (below). The chat app does; `studyapp ask` does not, since
        a chat app running beside it may have a reply streaming or a comparison on screen right now."""
        self.app_ctx = app_ctx
        self.conversations = ConversationStore(app_ctx.db)
        # A crash may have left a reply 'streaming': it is interrupted, with its text so far kept.
        self.recovered = self.conversations.mark_streaming_interrupted() if recover else 0
        # Likewise a comparison still generating or on screen when the app closed: nothing can rate it now, so it
        # ends 'abandoned' and becomes a study record. Were a rating recorded later after all, it wins (the
        # record's state prefers the rating, and the server keeps a comparison's latest event).
        self.abandoned = ComparisonStore(app_ctx.db).mark_abandoned() if recover else 0
        # And a question of the study's that was on screen: it ends 'unanswered' (a record too: how often people
        # leave a question is research data). A survey the participant put off stays due within its period.
        self.unanswered = QuestionStore(app_ctx.db).mark_unanswered() if recover else 0
        # A database that holds conversations from before STARTED_KEY existed has started before, too.
        self.first_start = app_ctx.settings.get(STARTED_KEY) is None and not self.conversations.list(limit=1)
        self._fixed_factory = model_factory
        self.participation = Participation(app_ctx.db, app_ctx.database_path)
        self._adopt_study_assistant(only_via_study=True)
        settings = self.model_settings()
        self.chat = ChatService(
            self.conversations,
            model_factory or self._make_model,
            params=settings.params,
            context_messages=settings.context_messages,
        )
        self._personalization: Personalization | None = None
        self._personalization_model: ChatModel | None = None
        # Models an enrolled study names for its other roles (extractor, selector, judges), by what builds them.
        self._role_models: dict[tuple[str, str | None, str | None, str], ChatModel] = {}
        self._retired_models: list[ChatModel] = []
        self.memory = MemoryService(MemoryStore(app_ctx.db), on_change=self.records_written)
        self.study = StudyService(app_ctx.db, study=self.participation.study)
        # The study's own questions ([[questions]]): asks nothing unless enrolled with them and consented.
        self.asking = Asking(app_ctx.db, self.participation.study, on_change=self.records_written)
        self.turns = TurnController(self)

    # Taking part in a study (studyapp.participation) -------------------------------------------

    @property
    def enrolled(self) -> bool:
        return self.participation.enrolled

    async def reload_study(self) -> None:
        """After enrollment or withdrawal: the study in force changes, and with it collection and the schedule."""
        self.participation.reload()
        await self.study_changed()

    async def study_changed(self) -> None:
        """Take on the study ``participation`` now holds (also after background sync brought a new protocol)."""
        self.study = StudyService(self.app_ctx.db, study=self.participation.study)
        self.asking = Asking(self.app_ctx.db, self.participation.study, on_change=self.records_written)
        self._personalization = None
        # Role models were built for the previous study (and its token, if any): build them anew when asked. A
        # background task may still hold one, so they are closed only with the app.
        self._retired_models += self._role_models.values()
        self._role_models = {}
        if self._adopt_study_assistant(only_via_study=False):
            await self.chat.replace_model(self._fixed_factory or self._make_model)

    def _adopt_study_assistant(self, *, only_via_study: bool) -> bool:
        """Switch the chat to the enrolled study's assistant model (the settings screen shows it); True if saved."""
        study = self.participation.study
        chosen = study_assistant(study, self.model_settings(), self.app_ctx.settings.get(ADOPTED_KEY),
                                 only_via_study=only_via_study)
        if chosen is None:
            return False
        self.app_ctx.save_model_settings(chosen)
        self.app_ctx.settings.set(ADOPTED_KEY, adopted_marker(study))
        return True

    def records_written(self) -> None:
        """Study records were committed: wake the outbox gate (the database noted them for it already)."""
        self.participation.records_written()

    def memory_viewed(self, opened_at: str, screen: str) -> None:
        """The participant looked at their memory on ``screen`` from ``opened_at`` until now: seeing it can change
        how they rate, so each look is a study record (the database notes it for the gate while enrolled)."""
        self.memory.store.record_view(opened_at=opened_at, screen=screen)
        self.records_written()

    # Comparison turns and attribute labeling (studyapp.study) -----------------------------------------

    def has_memory(self) -> bool:
        """Whether memory holds anything to select from (else a turn makes no selection call)."""
        return self.memory.store.count_active() > 0

    def comparison_runner(self) -> ComparisonRunner:
        return self.study.runner(self.chat.model, self.chat.params, context_messages=self.chat.context_messages)

    async def judge_pending(self) -> int:
        """The LLM judge on rated and skipped comparisons (verdicts are for researchers, never shown to the
        participant)."""
        judges = self.judge_models()
        return await self.study.judge_pending(judges) if judges else 0

    # Models for the study's roles ------------------------------------------------------------

    def role_model(self, role: str) -> ChatModel:
        """The model for ``role``: the enrolled study's choice, else the participant's own chat model.

        The built-in local study says ``local`` for every role, meaning "whatever the participant chats
        with", so someone who configured a server keeps using it. The embedded model is loaded only once.
        """
        spec = self.study.protocol.models.get(role) if self.enrolled else None
        return self._model_for(role, spec)

    def judge_models(self) -> list[ChatModel]:
        if not self.enrolled:
            return [self.chat.model]
        return [self._model_for("judge", spec) for spec in self.study.protocol.judges]

    def _model_for(self, role: str, spec: ModelSpec | None) -> ChatModel:
        chat_settings = self.model_settings()
        if spec is None:
            return self.chat.model
        if spec.via_study:
            # Through the study's server, each role says who it is (the server counts use per role): only the
            # assistant role may share the chat's model.
            settings = role_settings(self.participation.study, role, spec)
            if role == "assistant" and (chat_settings.model, chat_settings.base_url, chat_settings.via_study) == (
                    settings.model, settings.base_url, settings.via_study):
                return self.chat.model
        elif spec.model == chat_settings.model and not chat_settings.via_study and (
                spec.is_local or spec.base_url == chat_settings.base_url):
            return self.chat.model
        else:
            settings = ModelSettings(model=spec.model, base_url=spec.base_url)
        key = (settings.model, settings.base_url, settings.via_study, settings.role)
        if key not in self._role_models:
            self._role_models[key] = make_model(settings)
        return self._role_models[key]


    def labeling_plan(self) -> LabelingPlan:
        return self.study.labeling_plan()

    @property
    def personalization(self) -> Personalization:
        """The three stages, on the same model as the chat (rebuilt when the model changes)."""
        model = self.chat.model
        if self._personalization is None or self._personalization_model is not model:
            self._personalization = Personalization(
                self.app_ctx.db, extractor_model=self.role_model("extractor"),
                selector_model=self.role_model("selector"), on_change=self.records_written)
            self._personalization_model = model
        return self._personalization

    async def select_for(self, conversation: Conversation, request: Message) -> SelectionResult:
        """Stage 2 for a request, noting whether the selector model worked (status line, doctor)."""
        personalization = self.personalization
        result = await personalization.select_for(conversation, request)
        if result.error is not None or result.decisions:
            note_outcome(self.app_ctx.db, "selector", personalization.selector.model.name, result.error)
        return result

    def used_attributes(self, request_message_id: str) -> list[str]:
        """The attribute texts selected for this participant message (stage 2), whatever its reply used."""
        return [a.text for a in self.personalization_store.selected_attributes(request_message_id)]

    def memory_use(self, reply: Message, *, request: Message | None = None,
                   attributes: Sequence[str] | None = None) -> list[str]:
        """The attributes to name under ``reply`` ("Shaped by your memory"); empty: no line.

        Only a reply whose prompt held them names them (never a generic arm, even the chosen one), and only
        while the study in force shows memory use. ``attributes``: those a reply is streaming with (live);
        without them, those selected for ``request`` (a reopened conversation), so both paths agree.
        """
        if not self.study.protocol.display.show_memory_use or not built_with_memory(reply):
            return []
        if attributes is not None:
            return list(attributes)
        if request is None or request.role != "user":
            return []
        return self.used_attributes(request.id)

    @property
    def personalization_store(self) -> MemoryStore:
        return self.memory.store

    async def extract(self, conversation_id: str | None) -> list[ExtractionResult]:
        """Stage 1 in the background: never raises for model problems (they are noted for the status line)."""
        personalization = self.personalization
        results = await personalization.extract(conversation_id)
        failed = [r for r in results if r.status in ("failed", "unavailable")]
        if failed or any(r.status == "ok" for r in results):
            note_outcome(self.app_ctx.db, "extractor", personalization.extractor.model.name,
                         failed[-1].error or failed[-1].status if failed else None)
        return results

    def model_settings(self) -> ModelSettings:
        return self.app_ctx.model_settings()

    def mark_started(self) -> None:
        """Remember that the app has started on this database: the first start's welcome comes once."""
        self.app_ctx.settings.set(STARTED_KEY, True)

    async def use_local_server(self, model: str, base_url: str) -> str:
        """Chat with ``model`` on a server found on this computer, saved as the Settings screen saves."""
        return await self.apply_settings(self.model_settings().with_model(model, base_url), None)

    def _make_model(self) -> ChatModel:
        return make_model(self.model_settings())

    def keyring_status(self) -> KeyringStatus:
        from studyapp.secrets import keyring_status

        return keyring_status()

    async def apply_settings(self, settings: ModelSettings, api_key: str | None, *, in_file: bool = False) -> str:
        """Save model settings (and the API key: in the keyring, or in the private file when ``in_file``, the
        participant's choice). Returns what to tell the participant."""
        from studyapp.secrets import SecretStoreUnavailable, secrets_file, set_api_key

        message = f"Now chatting with {settings.describe()}."
        if api_key:
            try:
                # never on the event loop
                await asyncio.to_thread(partial(set_api_key, settings.key_profile, api_key, in_file=in_file))
                if in_file:
                    message += f" The API key is in a file only you can read: {secrets_file()}."
            except SecretStoreUnavailable as exc:
                message += f" The API key was NOT saved: {exc}"
        # The participant's explicit choice wins for this run: a flag that kept winning would make the next
        # reply fail the way the one that sent them here did.
        overridden = self.app_ctx.choose_model_settings(replace(settings))
        if overridden:
            message += (f" Your choice wins over {' and '.join(overridden)} for the rest of this run; "
                        "the next start uses them again unless you leave them out.")
        await self.chat.replace_model(self._fixed_factory or self._make_model, settings.params)
        return message

    def status_parts(self) -> list[str]:
        """Status-line parts: the study and its day (day N of M), attributes to label, and sync."""
        parts = [self.study.status_line()]
        if (taking_part := self.participation.status_line()) is not None:
            parts.append(taking_part)
        parts += [f"Model problem: {p.describe(100)}" for p in role_problems(self.app_ctx.db)]
        if (routed := self.study_routed_roles()):
            parts.append(f"{', '.join(routed)} via the study's server")
        return parts

    def study_routed_roles(self) -> list[str]:
        """The background roles (not the chat: its own part says so) whose model the study's server provides."""
        study = self.participation.study
        if not (study.enrolled and study.usable):
            return []
        roles = [header_role(role) for role, spec in study.protocol.models.items()
                 if spec.via_study and role != "assistant"]
        return list(dict.fromkeys(roles))

    async def aclose(self) -> None:
        for model in [*self._role_models.values(), *self._retired_models]:
            await model.aclose()
        await self.participation.aclose()
        await self.chat.aclose()
