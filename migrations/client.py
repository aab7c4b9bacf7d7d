"""Schema of the participant's database (migration set "studyapp").

Every schema change is a new function here, appended at the end; never edit one that has shipped.
Tables: docs/ARCHITECTURE.md section 6. Ids are random UUID strings; times are UTC ISO-8601.
"""

from __future__ import annotations

from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

migrations = Migrations("studyapp")


@migrations()
def m001_initial(db: Database) -> None:
    db.execute(
        """
        CREATE TABLE conversations (
            id TEXT PRIMARY KEY,
            title TEXT NOT NULL,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            memory_enabled INTEGER NOT NULL DEFAULT 1
        )
        """
    )
    db.execute("CREATE INDEX idx_conversations_updated ON conversations(updated_at)")
    # n is an INTEGER PRIMARY KEY so the rowid is explicit and stable across VACUUM;
    # the full-text index (m002) is keyed by it.
    db.execute(
        """
        CREATE TABLE messages (
            n INTEGER PRIMARY KEY,
            id TEXT NOT NULL UNIQUE,
            conversation_id TEXT NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
            role TEXT NOT NULL CHECK (role IN ('system', 'user', 'assistant')),
            content TEXT NOT NULL DEFAULT '',
            status TEXT NOT NULL CHECK (status IN ('complete', 'streaming', 'interrupted', 'error')),
            error TEXT,
            model TEXT,
            arm TEXT CHECK (arm IS NULL OR arm IN ('generic', 'personalized')),
            comparison_id TEXT,
            template TEXT,
            -- 0 for a comparison arm not (yet) chosen to continue the conversation
            in_thread INTEGER NOT NULL DEFAULT 1,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            first_token_ms REAL,
            duration_ms REAL,
            extracted_at TEXT
        )
        """
    )
    db.execute("CREATE INDEX idx_messages_conversation ON messages(conversation_id, n)")
    db.execute(
        """
        CREATE TABLE attributes (
            id TEXT PRIMARY KEY,
            text TEXT NOT NULL,
            reason TEXT NOT NULL DEFAULT '',
            confidence REAL NOT NULL CHECK (confidence >= 0 AND confidence <= 1),
            status TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'deleted')),
            origin TEXT NOT NULL CHECK (origin IN ('model', 'participant')),
            evidence TEXT NOT NULL DEFAULT '[]',
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        )
        """
    )
    db.execute(
        """
        CREATE TABLE attribute_events (
            id TEXT PRIMARY KEY,
            attribute_id TEXT NOT NULL REFERENCES attributes(id),
            action TEXT NOT NULL CHECK (action IN ('add', 'update', 'delete', 'keep')),
            before TEXT,
            after TEXT,
            reason TEXT NOT NULL DEFAULT '',
            actor TEXT NOT NULL CHECK (actor IN ('model', 'participant')),
            run_id TEXT,
            created_at TEXT NOT NULL
        )
        """
    )
    db.execute("CREATE INDEX idx_attribute_events_attribute ON attribute_events(attribute_id)")
    db.execute(
        """
        CREATE TABLE attribute_labels (
            id TEXT PRIMARY KEY,
            attribute_id TEXT NOT NULL REFERENCES attributes(id),
            label TEXT NOT NULL CHECK (label IN ('makes_sense', 'maybe', 'doesnt_make_sense')),
            labeled_at TEXT NOT NULL
        )
        """
    )
    db.execute(
        """
        CREATE TABLE extraction_runs (
            id TEXT PRIMARY KEY,
            status TEXT NOT NULL CHECK (status IN ('ok', 'failed')),
            model TEXT,
            template TEXT,
            message_ids TEXT NOT NULL DEFAULT '[]',
            raw TEXT,
            error TEXT,
            created_at TEXT NOT NULL
        )
        """
    )
    db.execute(
        """
        CREATE TABLE selections (
            id TEXT PRIMARY KEY,
            message_id TEXT NOT NULL,
            attribute_id TEXT NOT NULL REFERENCES attributes(id),
            selected INTEGER NOT NULL,
            rationale TEXT NOT NULL DEFAULT '',
            model TEXT,
            template TEXT,
            created_at TEXT NOT NULL
        )
        """
    )
    db.execute("CREATE INDEX idx_selections_message ON selections(message_id)")
    db.execute(
        """
        CREATE TABLE comparisons (
            id TEXT PRIMARY KEY,
            conversation_id TEXT NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
            prompt_message_id TEXT NOT NULL,
            generic_message_id TEXT,
            personalized_message_id TEXT,
            personalized_side TEXT NOT NULL CHECK (personalized_side IN ('left', 'right')),
            coin TEXT NOT NULL,
            selected_attributes TEXT NOT NULL DEFAULT '[]',
            model TEXT,
            parameters TEXT NOT NULL DEFAULT '{}',
            templates TEXT NOT NULL DEFAULT '{}',
            status TEXT NOT NULL DEFAULT 'generating'
                CHECK (status IN ('generating', 'shown', 'rated', 'skipped', 'error')),
            created_at TEXT NOT NULL,
            shown_at TEXT
        )
        """
    )
    db.execute(
        """
        CREATE TABLE ratings (
            id TEXT PRIMARY KEY,
            comparison_id TEXT NOT NULL UNIQUE REFERENCES comparisons(id) ON DELETE CASCADE,
            rating INTEGER CHECK (rating IS NULL OR rating BETWEEN 1 AND 5),
            shown_choice INTEGER,
            chosen TEXT CHECK (chosen IS NULL OR chosen IN ('generic', 'personalized')),
            skipped INTEGER NOT NULL DEFAULT 0,
            comment TEXT,
            time_to_rate_ms REAL,
            rated_at TEXT NOT NULL
        )
        """
    )
    db.execute(
        """
        CREATE TABLE relevance_labels (
            id TEXT PRIMARY KEY,
            comparison_id TEXT NOT NULL REFERENCES comparisons(id) ON DELETE CASCADE,
            attribute_id TEXT NOT NULL,
            selected_by_model INTEGER NOT NULL,
            model_relevant INTEGER NOT NULL,
            human_relevant INTEGER,
            labeled_at TEXT
        )
        """
    )
    db.execute(
        """
        CREATE TABLE judge_verdicts (
            id TEXT PRIMARY KEY,
            comparison_id TEXT NOT NULL REFERENCES comparisons(id) ON DELETE CASCADE,
            judge_model TEXT NOT NULL,
            personalized_side TEXT NOT NULL CHECK (personalized_side IN ('left', 'right')),
            rating INTEGER CHECK (rating IS NULL OR rating BETWEEN 1 AND 5),
            raw TEXT,
            template TEXT,
            created_at TEXT NOT NULL
        )
        """
    )
    db.execute(
        """
        CREATE TABLE studies (
            id TEXT PRIMARY KEY,
            protocol TEXT NOT NULL,
            server_url TEXT,
            participant_id TEXT,
            enrolled_at TEXT NOT NULL,
            withdrawn_at TEXT
        )
        """
    )
    # Append-only: the current consent is the latest row for a study.
    db.execute(
        """
        CREATE TABLE consent_events (
            id TEXT PRIMARY KEY,
            study_id TEXT NOT NULL,
            document_version TEXT NOT NULL,
            document_sha256 TEXT NOT NULL,
            categories TEXT NOT NULL DEFAULT '[]',
            action TEXT NOT NULL CHECK (action IN ('grant', 'update', 'withdraw')),
            created_at TEXT NOT NULL
        )
        """
    )
    db.execute(
        """
        CREATE TRIGGER consent_events_append_only_update BEFORE UPDATE ON consent_events
        BEGIN SELECT RAISE(ABORT, 'consent_events is append-only'); END
        """
    )
    db.execute(
        """
        CREATE TRIGGER consent_events_append_only_delete BEFORE DELETE ON consent_events
        BEGIN SELECT RAISE(ABORT, 'consent_events is append-only'); END
        """
    )
    # Holds only anonymized payloads (privacy invariant 2).
    db.execute(
        """
        CREATE TABLE outbox (
            event_id TEXT PRIMARY KEY,
            study_id TEXT NOT NULL,
            kind TEXT NOT NULL,
            category TEXT NOT NULL,
            payload TEXT NOT NULL,
            consent_version TEXT,
            status TEXT NOT NULL DEFAULT 'pending'
                CHECK (status IN ('pending', 'approved', 'withheld', 'rejected')),
            reason TEXT,
            attempts INTEGER NOT NULL DEFAULT 0,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        )
        """
    )
    db.execute("CREATE INDEX idx_outbox_status ON outbox(status, created_at)")
    # The pseudonym mapping never leaves the machine.
    db.execute(
        """
        CREATE TABLE pseudonyms (
            entity_type TEXT NOT NULL,
            value TEXT NOT NULL,
            placeholder TEXT NOT NULL,
            created_at TEXT NOT NULL,
            PRIMARY KEY (entity_type, value)
        )
        """
    )
    db.execute(
        """
        CREATE TABLE privacy_terms (
            term TEXT PRIMARY KEY,
            created_at TEXT NOT NULL
        )
        """
    )
    db.execute("CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL)")


@migrations()
def m002_message_search(db: Database) -> None:
    # External-content FTS5 over messages.content, kept current by triggers; populated from
    # existing rows so databases created before this migration are searchable too.
    db["messages"].enable_fts(["content"], fts_version="FTS5", create_triggers=True, tokenize="porter")


@migrations()
def m003_consent_include_earlier(db: Database) -> None:
    # Categories for which the participant chose to include records made before the grant
    # (privacy/consent.py); a JSON list, empty for every consent event recorded before this.
    db.execute("ALTER TABLE consent_events ADD COLUMN include_earlier TEXT NOT NULL DEFAULT '[]'")


@migrations()
def m004_streaming_index(db: Database) -> None:
    # Each start marks replies cut off by a crash as interrupted; this keeps that from scanning every message.
    db.execute("CREATE INDEX idx_messages_streaming ON messages(status) WHERE status = 'streaming'")


@migrations()
def m005_collect_queue(db: Database) -> None:
    # Where the participant gave a stage-1 label: the study's review prompt or the memory screen
    # (NULL for labels given before this migration, when it was not recorded).
    db.execute("ALTER TABLE attribute_labels ADD COLUMN source TEXT "
               "CHECK (source IS NULL OR source IN ('label_prompt', 'memory_screen'))")
    # An upload in flight claims its events, so a re-scrub, withhold or approval never changes an event
    # between the moment its payload is read for sending and the server's answer (sync/client.py).
    db.execute("ALTER TABLE outbox ADD COLUMN claim_id TEXT")
    db.execute("ALTER TABLE outbox ADD COLUMN claimed_at TEXT")
    # The transactional outbox's intake (studyapp/store/collect_queue.py): while the install is
    # enrolled, every study record written is also noted here *in the same transaction*, by the triggers
    # below, so a crash between writing a rating and the privacy gate can no longer lose it. The record pump
    # drains this table at start and after every change, and removes a row in the same transaction that
    # queues its anonymized event. source_id names the source row; payload is a snapshot only for
    # attributes, the one record kind that changes after it is written.
    db.execute(
        """
        CREATE TABLE collect_queue (
            n INTEGER PRIMARY KEY,
            kind TEXT NOT NULL,
            source_id TEXT NOT NULL,
            payload TEXT,
            created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now'))
        )
        """
    )
    enrolled = "EXISTS (SELECT 1 FROM studies WHERE withdrawn_at IS NULL)"
    finished = "('complete', 'interrupted', 'error')"
    # A message is a record once it is finished: a participant's message when saved, a reply when it ends
    # (also when a crash left it streaming and the next start marks it interrupted). Comparison arms are
    # not messages of the thread: they travel in the comparison record.
    db.execute(
        f"""
        CREATE TRIGGER collect_message_insert AFTER INSERT ON messages
        WHEN NEW.status IN {finished} AND NEW.role != 'system' AND NEW.arm IS NULL AND {enrolled}
        BEGIN INSERT INTO collect_queue (kind, source_id) VALUES ('message', NEW.id); END
        """
    )
    db.execute(
        f"""
        CREATE TRIGGER collect_message_finish AFTER UPDATE OF status ON messages
        WHEN OLD.status = 'streaming' AND NEW.status IN {finished} AND NEW.role != 'system' AND NEW.arm IS NULL
             AND {enrolled}
        BEGIN INSERT INTO collect_queue (kind, source_id) VALUES ('message', NEW.id); END
        """
    )
    snapshot = ("json_object('attribute_id', NEW.id, 'text', NEW.text, 'reason', NEW.reason, "
                "'confidence', NEW.confidence, 'origin', NEW.origin, 'status', NEW.status, "
                "'created_at', NEW.created_at, 'updated_at', NEW.updated_at)")
    db.execute(
        f"""
        CREATE TRIGGER collect_attribute_insert AFTER INSERT ON attributes WHEN {enrolled}
        BEGIN INSERT INTO collect_queue (kind, source_id, payload) VALUES ('attribute', NEW.id, {snapshot}); END
        """
    )
    db.execute(
        f"""
        CREATE TRIGGER collect_attribute_update AFTER UPDATE ON attributes
        WHEN (NEW.updated_at IS NOT OLD.updated_at OR NEW.status IS NOT OLD.status OR NEW.text IS NOT OLD.text)
             AND {enrolled}
        BEGIN INSERT INTO collect_queue (kind, source_id, payload) VALUES ('attribute', NEW.id, {snapshot}); END
        """
    )
    db.execute(
        f"""
        CREATE TRIGGER collect_attribute_label AFTER INSERT ON attribute_labels WHEN {enrolled}
        BEGIN INSERT INTO collect_queue (kind, source_id) VALUES ('attribute_label', NEW.id); END
        """
    )
    # A rating (or skip) and its relevance labels are written in one transaction; the rating row names them all.
    db.execute(
        f"""
        CREATE TRIGGER collect_rating AFTER INSERT ON ratings WHEN {enrolled}
        BEGIN INSERT INTO collect_queue (kind, source_id) VALUES ('comparison', NEW.comparison_id); END
        """
    )
    db.execute(
        f"""
        CREATE TRIGGER collect_judge_verdict AFTER INSERT ON judge_verdicts
        WHEN NEW.rating IS NOT NULL AND {enrolled}
        BEGIN INSERT INTO collect_queue (kind, source_id) VALUES ('judge_verdict', NEW.id); END
        """
    )


@migrations()
def m006_schedule_decisions(db: Database) -> None:
    # Every participant turn the comparison schedule looked at, and why it did or did not become a comparison
    # (study/schedule.py OUTCOMES). Without it, which turns became comparisons would be an unmeasured selection.
    db.execute(
        """
        CREATE TABLE schedule_decisions (
            id TEXT PRIMARY KEY,
            message_id TEXT NOT NULL,
            conversation_id TEXT NOT NULL,
            decided_at TEXT NOT NULL,
            eligible INTEGER NOT NULL,
            draw REAL,
            probability REAL,
            outcome TEXT NOT NULL,
            reason TEXT NOT NULL DEFAULT '',
            memory_size INTEGER NOT NULL,
            selected_count INTEGER
        )
        """
    )
    db.execute("CREATE INDEX idx_schedule_decisions_message ON schedule_decisions(message_id)")
    db.execute(
        """
        CREATE TRIGGER collect_schedule_decision AFTER INSERT ON schedule_decisions
        WHEN EXISTS (SELECT 1 FROM studies WHERE withdrawn_at IS NULL)
        BEGIN INSERT INTO collect_queue (kind, source_id) VALUES ('schedule_decision', NEW.id); END
        """
    )


@migrations()
def m007_label_context(db: Database) -> None:
    # What was labeled: the attribute's text and confidence as they were when the participant labeled it (the
    # attribute may be edited or re-scored later), and its age then. NULL for labels given before this migration.
    db.execute("ALTER TABLE attribute_labels ADD COLUMN attribute_text TEXT")
    db.execute("ALTER TABLE attribute_labels ADD COLUMN confidence REAL")
    db.execute("ALTER TABLE attribute_labels ADD COLUMN age_s REAL")
    # "Later" in the label prompt with the attribute on screen unanswered: without it, an attribute left
    # unlabeled could not be told apart from one never shown.
    db.execute(
        """
        CREATE TABLE label_dismissals (
            id TEXT PRIMARY KEY,
            attribute_id TEXT NOT NULL REFERENCES attributes(id),
            dismissed_at TEXT NOT NULL,
            source TEXT CHECK (source IS NULL OR source IN ('label_prompt', 'memory_screen'))
        )
        """
    )
    db.execute("CREATE INDEX idx_label_dismissals_attribute ON label_dismissals(attribute_id)")
    db.execute(
        """
        CREATE TRIGGER collect_label_dismissal AFTER INSERT ON label_dismissals
        WHEN EXISTS (SELECT 1 FROM studies WHERE withdrawn_at IS NULL)
        BEGIN INSERT INTO collect_queue (kind, source_id) VALUES ('label_dismissal', NEW.id); END
        """
    )


@migrations()
def m008_study_records(db: Database) -> None:
    enrolled = "EXISTS (SELECT 1 FROM studies WHERE withdrawn_at IS NULL)"
    # What became of a comparison that was not rated or skipped: an arm failed, the participant stopped it, or
    # the app closed before it was rated (marked at the next start). Such comparisons are study records too.
    db.execute("ALTER TABLE comparisons ADD COLUMN end_state TEXT "
               "CHECK (end_state IS NULL OR end_state IN ('failed', 'cancelled', 'abandoned'))")
    db.execute("ALTER TABLE comparisons ADD COLUMN ended_at TEXT")
    # The conversation both arms were written with (ids of the history messages, in order) and a sha256 of it, so
    # the judge can be shown the same context and a record can show it was.
    db.execute("ALTER TABLE comparisons ADD COLUMN context_message_ids TEXT")
    db.execute("ALTER TABLE comparisons ADD COLUMN context_sha256 TEXT")
    db.execute(
        f"""
        CREATE TRIGGER collect_comparison_end AFTER UPDATE OF end_state ON comparisons
        WHEN NEW.end_state IS NOT NULL AND OLD.end_state IS NULL
             AND NOT EXISTS (SELECT 1 FROM ratings WHERE comparison_id = NEW.id) AND {enrolled}
        BEGIN INSERT INTO collect_queue (kind, source_id) VALUES ('comparison', NEW.id); END
        """
    )
    # The answer the participant kept from a comparison joins the conversation (in_thread = 1, in the rating's
    # transaction): from then on it is one of the conversation's messages, and a record like them.
    db.execute(
        f"""
        CREATE TRIGGER collect_kept_arm AFTER UPDATE OF in_thread ON messages
        WHEN NEW.in_thread = 1 AND OLD.in_thread = 0 AND NEW.arm IS NOT NULL
             AND NEW.status IN ('complete', 'interrupted', 'error') AND {enrolled}
        BEGIN INSERT INTO collect_queue (kind, source_id) VALUES ('message', NEW.id); END
        """
    )
    # Whether the selector's answer was readable and named this attribute (NULL: recorded before this migration).
    db.execute("ALTER TABLE selections ADD COLUMN valid INTEGER")
    # What became of each relevance question (NULL before this migration: human_relevant alone, where NULL meant
    # "not sure", "not answered" or "never shown"), when it was asked, and the chance it was sampled.
    db.execute("ALTER TABLE relevance_labels ADD COLUMN status TEXT "
               "CHECK (status IS NULL OR status IN ('yes', 'no', 'not_sure', 'not_asked'))")
    db.execute("ALTER TABLE relevance_labels ADD COLUMN asked_when TEXT "
               "CHECK (asked_when IS NULL OR asked_when IN ('before_rating', 'after_rating'))")
    db.execute("ALTER TABLE relevance_labels ADD COLUMN ask_probability REAL")
    # The conversation context the judge saw (sha256 and length of the transcript it was given).
    db.execute("ALTER TABLE judge_verdicts ADD COLUMN context_sha256 TEXT")
    db.execute("ALTER TABLE judge_verdicts ADD COLUMN context_chars INTEGER")
    # An unreadable verdict is a record too (a judge that cannot answer is part of the judge's agreement).
    db.execute("DROP TRIGGER collect_judge_verdict")
    db.execute(
        f"""
        CREATE TRIGGER collect_judge_verdict AFTER INSERT ON judge_verdicts WHEN {enrolled}
        BEGIN INSERT INTO collect_queue (kind, source_id) VALUES ('judge_verdict', NEW.id); END
        """
    )
    # Each time the participant looked at what the assistant holds about them, written when they leave it.
    db.execute(
        """
        CREATE TABLE memory_views (
            id TEXT PRIMARY KEY,
            opened_at TEXT NOT NULL,
            closed_at TEXT NOT NULL,
            duration_s REAL NOT NULL,
            screen TEXT NOT NULL CHECK (screen IN ('memory_screen', 'label_prompt'))
        )
        """
    )
    db.execute(
        f"""
        CREATE TRIGGER collect_memory_view AFTER INSERT ON memory_views WHEN {enrolled}
        BEGIN INSERT INTO collect_queue (kind, source_id) VALUES ('memory_view', NEW.id); END
        """
    )


@migrations()
def m009_question_asks(db: Database) -> None:
    # Every question of the study's own (protocol [[questions]]) put to the participant, and what became of it
    # (studyapp/study/asking.py). A row is written when the question is asked, so a crash leaves it 'asked' and
    # the next start closes it as 'unanswered': asks that were skipped or never answered are research data too.
    # asked_at is UTC like every stored time; utc_offset_min and local_day keep the participant's own clock and
    # calendar then (daily caps and periods count by it). period names the day, week or study end a daily, weekly
    # or at_end question was asked for (asked once per period) and period_ends_at when that period is over (NULL:
    # never, at_end); due_at is when a postponed survey is due again.
    db.execute(
        """
        CREATE TABLE question_asks (
            id TEXT PRIMARY KEY,
            study_id TEXT NOT NULL,
            question_id TEXT NOT NULL,
            question_version TEXT NOT NULL,
            question_type TEXT NOT NULL CHECK (question_type IN ('likert', 'choice', 'yes_no', 'text')),
            question_when TEXT NOT NULL
                CHECK (question_when IN ('after_comparison', 'after_turn', 'daily', 'weekly', 'at_end')),
            asked_at TEXT NOT NULL,
            utc_offset_min INTEGER NOT NULL,
            local_day TEXT NOT NULL,
            study_day INTEGER,
            period TEXT,
            period_ends_at TEXT,
            comparison_id TEXT,
            message_id TEXT,
            ask_probability REAL,
            status TEXT NOT NULL
                CHECK (status IN ('asked', 'postponed', 'answered', 'skipped', 'unanswered')),
            due_at TEXT,
            answered_at TEXT,
            answer_number INTEGER,
            answer_option TEXT,
            answer_text TEXT
        )
        """
    )
    db.execute("CREATE INDEX idx_question_asks_question ON question_asks(study_id, question_id, local_day)")
    db.execute("CREATE INDEX idx_question_asks_status ON question_asks(status)")
    # The record leaves once its status is final (answered, skipped, unanswered), in that transaction.
    db.execute(
        """
        CREATE TRIGGER collect_question_answer AFTER UPDATE OF status ON question_asks
        WHEN NEW.status IN ('answered', 'skipped', 'unanswered') AND OLD.status IN ('asked', 'postponed')
             AND EXISTS (SELECT 1 FROM studies WHERE withdrawn_at IS NULL)
        BEGIN INSERT INTO collect_queue (kind, source_id) VALUES ('question_answer', NEW.id); END
        """
    )
