"""The paper's progressive procedure (section 3.2) as data: a list of Stages an orchestrator runs,
checkpoints and resumes one at a time."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from .config import Params

StageKind = Literal["first", "add", "finetune", "final"]


@dataclass(frozen=True)
class Stage:
    """One step of the schedule.

    `attributes` are the Branches trained in this stage (their losses are summed, each masked to the
    images labelled for it); the stage's images are the union of those labelled for any of them.
    `new_attribute` is the Branch this stage adds (first/add stages; None for a joint first stage,
    which adds every Branch it trains). `lr_factor` scales every LR.
    """

    index: int
    name: str
    kind: StageKind
    new_attribute: str | None
    attributes: tuple[str, ...]
    epochs: int
    lr_factor: float
    freeze_base: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)



def attribute_order(params: Params, article: str | None = None) -> list[str]:
    """Attributes of an article in training order: `train.attribute_order` if set, else taxonomy order."""
    article = article or params.train.article
    attrs = list(params.attributes(article))
    if params.train.attribute_order and article == params.train.article:
        return list(params.train.attribute_order)
    return attrs

def build_schedule(params: Params, article: str | None = None) -> list[Stage]:
    """first(A1); then add(Ak) + finetune(A1..Ak) for k = 2..n; then final (Base frozen, all Branches).

    With train.finetune_after = "last", only the fine-tune after the last add is kept (a cheaper
    schedule: the intermediate fine-tunes run every Branch so far over the union of their images).
    With train.base_attributes = k > 0, the Base learns only in the stages of the first k attributes;
    every later attribute's add stage trains its Branch alone on the frozen Base, with no fine-tune.
    With train.first_attributes = k > 1, the first stage trains the Base and the first k Branches
    jointly (each Branch's loss masked to its labelled images; 0 = every attribute)."""
    t = params.train
    order = attribute_order(params, article)
    first = min(t.first_attributes or len(order), len(order))  # attributes the first stage trains jointly
    base_learns = max(t.base_attributes or len(order), first)   # attributes whose stages train the Base
    stages = [Stage(0, f"first:{'+'.join(order[:first])}", "first", order[0] if first == 1 else None,
                    tuple(order[:first]), t.epochs_first, 1.0, False)]
    for k in range(first, len(order)):
        attr = order[k]
        frozen = k >= base_learns
        stages.append(Stage(len(stages), f"add:{attr}", "add", attr, (attr,), t.epochs_add, 1.0, frozen))
        if frozen:  # the Base no longer moves, so no earlier Branch needs repairing
            continue
        if t.finetune_after == "each" or k == min(len(order), base_learns) - 1:
            stages.append(Stage(len(stages), f"finetune:{'+'.join(order[:k + 1])}", "finetune", None,
                                tuple(order[:k + 1]), t.epochs_finetune, params.optimizer.finetune_factor, False))
    stages.append(Stage(len(stages), "final", "final", None, tuple(order), t.epochs_final, params.optimizer.final_factor, True))
    return stages


def branch_add_stages(existing: list[str], attribute: str, params: Params, mode: str) -> list[Stage]:
    """Stages that add one attribute to a trained model.

    `frozen_base`: only the new Branch trains (Base frozen), so existing Branches cannot change.
    `progressive`: the paper's add + fine-tune-everything + frozen-Base final steps.
    Epochs come from `branch_add:`, learning-rate factors from `optimizer:`.
    """
    b = params.branch_add
    if mode == "frozen_base":
        return [Stage(0, f"add:{attribute}", "add", attribute, (attribute,), b.epochs_add, 1.0, True)]
    if mode != "progressive":
        raise ValueError(f"branch-add mode {mode!r}; allowed: frozen_base, progressive")
    everything = (*existing, attribute)
    return [Stage(0, f"add:{attribute}", "add", attribute, (attribute,), b.epochs_add, 1.0, False),
            Stage(1, f"finetune:{'+'.join(everything)}", "finetune", None, everything, b.epochs_finetune,
                  params.optimizer.finetune_factor, False),
            Stage(2, "final", "final", None, everything, b.epochs_final, params.optimizer.final_factor, True)]
