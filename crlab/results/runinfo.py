"""What the store knows about a run besides its jobs; handed to every reporter."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class RunInfo:
    run_id: str
    started: str
    finished: str | None
    status: str  # running, complete or incomplete
    config_path: str
    config_digest: str
    host: dict[str, Any] = field(default_factory=dict)
    job_counts: dict[str, int] = field(default_factory=dict)  # job status value -> number of jobs
    config_text: str = ""  # the matrix file as it was when the run started ("" in runs before schema 2)
    config_sources: dict[str, str] = field(default_factory=dict)  # every file it drew on: path -> text

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "started": self.started,
            "finished": self.finished,
            "status": self.status,
            "config_path": self.config_path,
            "config_digest": self.config_digest,
            "config_text": self.config_text,
            "config_sources": self.config_sources,
            "host": self.host,
            "job_counts": self.job_counts,
        }
