"""The study part as one service for the app: is this turn a comparison, run it, record it, judge it.

The app (tui) holds one ``StudyService`` and calls, for each participant message already stored:

    decision = study.decide(conversation, prompt)          # schedule rules on facts from the database
    if decision.compare:
        choices = <the selector's verdicts for prompt>      # personalize.select, as for an ordinary turn
        if study.has_selection(choices):
            screen = ComparisonScreen(lambda progress: runner.run(conv_id, prompt, choices, progress=progress),
                                      labels=study.protocol.rating_scale.labels, on_shown=runner.mark_shown)
            result = await push_screen_wait(screen); runner.record_result(result)
            then, in the background: await study.judge_pending(judge_models)

A comparison needs at least one selected attribute (otherwise both arms would be generic), so the built-in
study's first comparison comes once the memory holds something relevant to the request.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from sqlite_utils import Database

from studyapp.domain import Conversation, Message
from studyapp.llm.base import ChatModel, ChatParams
from studyapp.store.comparisons import ComparisonStore
from studyapp.store.conversations import ConversationStore
from studyapp.store.memory import MemoryStore
from studyapp.store.schedule import ScheduleStore
from studyapp.study.comparison import AttributeChoice, ComparisonRunner
from studyapp.study.current import CurrentStudy, current_study
from studyapp.study.judge import Judge
from studyapp.study.labeling import LabelingPlan, plan_labeling
from studyapp.study.protocol import Protocol
from studyapp.study.roles import note_outcome
from studyapp.study.schedule import ComparisonScheduler, ScheduleDecision, TurnFacts, start_of_day


class StudyService:
    def __init__(self, db: Database, *, study: CurrentStudy | None = None, rng: random.Random | None = None) -> None:
        self.db = db
        self.study = study or current_study(db)
        self.comparisons = ComparisonStore(db)
        self.conversations = ConversationStore(db)
        self.memory = MemoryStore(db)
        self.schedules = ScheduleStore(db)
        self.scheduler = ComparisonScheduler(self.protocol.comparisons, rng)

    @property
    def protocol(self) -> Protocol:
        return self.study.protocol

    def turn_facts(self, conversation: Conversation, prompt: Message) -> TurnFacts:
        return TurnFacts(
            turns_since_last_comparison=self.comparisons.user_turns_since_last(before_n=prompt.n),
            comparisons_today=self.comparisons.count_since(start_of_day()),
            attributes_in_memory=self.memory.count_active(),
            memory_enabled=conversation.memory_enabled,
        )

    def decide(self, conversation: Conversation, prompt: Message) -> ScheduleDecision:
        return self.scheduler.decide(self.turn_facts(conversation, prompt))

    def record_decision(self, prompt: Message, decision: ScheduleDecision, *, outcome: str,
                        selected_count: int | None) -> str:
        """Record the schedule's decision on a turn (and how selection settled a won draw)."""
        return self.schedules.record(
            message_id=prompt.id, conversation_id=prompt.conversation_id, eligible=decision.eligible,
            draw=decision.draw, probability=decision.probability, outcome=outcome, reason=decision.reason,
            memory_size=self.memory.count_active(), selected_count=selected_count)

    @staticmethod
    def has_selection(choices: Sequence[AttributeChoice]) -> bool:
        return any(c.selected for c in choices)

    def runner(self, model: ChatModel, params: ChatParams | None = None, *,
               context_messages: int = 20) -> ComparisonRunner:
        return ComparisonRunner(model, self.conversations, self.comparisons, params=params,
                                context_messages=context_messages)

    def labeling_plan(self) -> LabelingPlan:
        return plan_labeling(self.memory, self.protocol.attribute_review)

    def status_line(self) -> str:
        return self.study.status_line(self.labeling_plan().unlabeled)

    async def judge_pending(self, models: Sequence[ChatModel]) -> int:
        """Background judging of rated and skipped comparisons not yet judged by each model; returns verdicts
        stored."""
        judge = Judge(models, self.comparisons)
        count = await judge.judge_pending()
        # A failing judge never shows as a failed reply: note it for the status line and `studyapp doctor` (one
        # record for the role: a failing judge stays noted until every judge answered again).
        failing = [(model, error) for model, error in judge.outcomes.items() if error is not None]
        if failing:
            note_outcome(self.db, "judge", *failing[0])
        elif judge.outcomes:
            note_outcome(self.db, "judge", next(iter(judge.outcomes)), None)
        return count
