"""SQLAlchemy ORM for the annotation app (SQLite file by default, PostgreSQL by URL).

Ids are short opaque strings with a type prefix ("i-", "r-", "a-", "j-") so exported rows are
self-describing. Uniqueness constraints are the last line of defence against duplicated work:
one assignment per (annotator, item) and one judgment per (annotator, item, dimension).
"""

from __future__ import annotations

import secrets
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (JSON, Boolean, DateTime, Float, ForeignKey, Integer, String, Text,
                        UniqueConstraint)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def new_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(8)}"


class Base(DeclarativeBase):
    pass


class Project(Base):
    __tablename__ = "annotation_projects"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    title: Mapped[str] = mapped_column(String(500), default="")
    guidelines: Mapped[str] = mapped_column(Text, default="")
    overlap: Mapped[int] = mapped_column(Integer, default=3)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)  # the resolved spec, for provenance
    admin_token_hash: Mapped[str] = mapped_column(String(64))
    # sha256 of the shared join link token for crowd platforms (None: no join link)
    join_token_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    base_url: Mapped[str | None] = mapped_column(String(500), nullable=True)  # where `serve` answers
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    dimensions: Mapped[list[Dimension]] = relationship(order_by="Dimension.position",
                                                       back_populates="project")


class Dimension(Base):
    __tablename__ = "annotation_dimensions"
    __table_args__ = (UniqueConstraint("project_id", "name"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("annotation_projects.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    scale: Mapped[str] = mapped_column(String(20))  # pairwise | ranking | likert | text
    likert_min: Mapped[int | None] = mapped_column(Integer, nullable=True)
    likert_max: Mapped[int | None] = mapped_column(Integer, nullable=True)
    required: Mapped[bool] = mapped_column(Boolean, default=True)
    position: Mapped[int] = mapped_column(Integer, default=0)
    project: Mapped[Project] = relationship(back_populates="dimensions")


class Item(Base):
    __tablename__ = "annotation_items"
    __table_args__ = (UniqueConstraint("project_id", "content_hash"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("i"))
    project_id: Mapped[int] = mapped_column(ForeignKey("annotation_projects.id"), index=True)
    prompt: Mapped[str] = mapped_column(Text)
    content_hash: Mapped[str] = mapped_column(String(64))  # re-importing the same item is a no-op
    source: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # where it was imported from
    kind: Mapped[str] = mapped_column(String(20), default="regular")  # regular | gold | attention
    gold: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)  # dimension -> expected value
    messages: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON, nullable=True)  # multi-turn prompt
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    responses: Mapped[list[Response]] = relationship(order_by="Response.position",
                                                     back_populates="item")


class Response(Base):
    __tablename__ = "annotation_responses"
    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("r"))
    item_id: Mapped[str] = mapped_column(ForeignKey("annotation_items.id"), index=True)
    position: Mapped[int] = mapped_column(Integer)  # order in the imported file
    text: Mapped[str] = mapped_column(Text)
    model: Mapped[str] = mapped_column(String(300), default="")
    settings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    item: Mapped[Item] = relationship(back_populates="responses")


class Annotator(Base):
    __tablename__ = "annotation_annotators"
    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("a"))
    project_id: Mapped[int] = mapped_column(ForeignKey("annotation_projects.id"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)  # sha256 of the link token
    attributes: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    preset_keys: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)  # set by the researcher
    max_items: Mapped[int | None] = mapped_column(Integer, nullable=True)  # per-annotator cap override
    external_id: Mapped[str | None] = mapped_column(String(200), nullable=True)  # e.g. a Prolific PID
    withdrawn_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    consent: Mapped[bool] = mapped_column(Boolean, default=False)
    consent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)
    label: Mapped[str] = mapped_column(String(200), default="")  # researcher's note, never shown
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Assignment(Base):
    """One item offered to one annotator: a lease while `assigned`, then submitted or skipped."""

    __tablename__ = "annotation_assignments"
    __table_args__ = (UniqueConstraint("annotator_id", "item_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    item_id: Mapped[str] = mapped_column(ForeignKey("annotation_items.id"), index=True)
    annotator_id: Mapped[str] = mapped_column(ForeignKey("annotation_annotators.id"), index=True)
    status: Mapped[str] = mapped_column(String(20), default="assigned")  # assigned|submitted|skipped
    display_order: Mapped[list[str]] = mapped_column(JSON)  # response ids, left to right
    shown_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class Judgment(Base):
    __tablename__ = "annotation_judgments"
    __table_args__ = (UniqueConstraint("annotator_id", "item_id", "dimension_id"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("j"))
    assignment_id: Mapped[int] = mapped_column(ForeignKey("annotation_assignments.id"), index=True)
    item_id: Mapped[str] = mapped_column(ForeignKey("annotation_items.id"), index=True)
    annotator_id: Mapped[str] = mapped_column(ForeignKey("annotation_annotators.id"), index=True)
    dimension_id: Mapped[int] = mapped_column(ForeignKey("annotation_dimensions.id"), index=True)
    value: Mapped[Any] = mapped_column(JSON)
    comment: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    time_spent_s: Mapped[float] = mapped_column(Float, default=0.0)
    # The annotator's attributes when this judgment was made: later edits never relabel it.
    annotator_attributes: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    correct: Mapped[bool | None] = mapped_column(Boolean, nullable=True)  # control items only


class Adjudication(Base):
    """A researcher's final answer for a disputed (item, dimension): the preferred response."""

    __tablename__ = "annotation_adjudications"
    __table_args__ = (UniqueConstraint("item_id", "dimension_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    item_id: Mapped[str] = mapped_column(ForeignKey("annotation_items.id"), index=True)
    dimension_id: Mapped[int] = mapped_column(ForeignKey("annotation_dimensions.id"))
    chosen_response_id: Mapped[str] = mapped_column(String(40))
    note: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
