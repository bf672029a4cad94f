"""A claim of the paper beside this book's number, and its verdict (:class:`Status`).

This module sits below the results schema (:mod:`imreg_lib.paper.results` stores claims) and the report
(:mod:`imreg_lib.paper.report` makes them); it imports neither.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

from ._schema import Record

__all__ = ["STATUSES", "Claim", "Status", "claims_summary"]


class Status(enum.StrEnum):
    """The verdict of a claim.

    * ``REPRODUCED``: our number agrees with the paper's within the rule's tolerance, or the paper's statement holds
      in our run by the rule;
    * ``DIFFERS``: it does not; the claim's ``explanation`` says by how much and what we think the reason is;
    * ``IMPROVED``: the paper's own measurement, under the paper's protocol, comes out clearly better here;
    * ``BEYOND``: a measurement of another method than the paper's, shown for comparison, never a reproduction;
    * ``NOT_RUN``: the notebook ran with parameters that leave the setting out (e.g. the quick preview).

    A status is a string (``Status.REPRODUCED == "reproduced"``), written to JSON as its value.
    """

    REPRODUCED = "reproduced"
    DIFFERS = "differs"
    IMPROVED = "improved"
    BEYOND = "beyond the paper"
    NOT_RUN = "not run"


#: The statuses' values, in the report's order.
STATUSES: tuple[str, ...] = tuple(s.value for s in Status)


@dataclass(frozen=True)
class Claim(Record):
    """One statement of the paper with our number and its verdict."""

    #: Stable identifier (``"fig2.registers"``): the same claim on another data set has the same id.
    id: str
    #: Where the paper makes it ("Table 1", "Fig 2", "§4.3.1", ...).
    section: str
    #: The statement, in a few words.
    claim: str
    #: The paper's number or wording.
    paper: str
    #: Ours, formatted.
    ours: str
    #: The verdict (a string of :data:`STATUSES` is accepted and converted).
    status: Status
    #: The rule that decided ``status``, in words.
    rule: str
    #: Why it differs, where it does, and the settings behind the row.
    explanation: str = ""
    #: Whether ``ours`` is reproducible on one machine (``False`` for timings and memory), so the regression tests may
    #: compare the status.
    stable: bool = True
    #: The paper's number and (next) ours, where the claim is one number (for plotting ours against the paper's).
    paper_value: float | None = None
    ours_value: float | None = None
    #: What the numbers were computed on (the notebook's own description of its data).
    data: str = ""

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {self.status!r}")
        object.__setattr__(self, "status", Status(self.status))


def claims_summary(claims: Sequence[Claim]) -> dict[str, int]:
    """How many claims have each status, ``{status: count}`` in the order of :data:`STATUSES`."""
    return {s: sum(c.status == s for c in claims) for s in STATUSES}
