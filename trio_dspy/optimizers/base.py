"""What every optimizer shares: the ``compile`` call and how predictors are matched."""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import Any, TypeVar

from ..errors import TrioDSPyError
from ..modules.module import Module
from ..primitives import Example
from .stats import OptimizerStats

__all__ = ["ModuleT", "Optimizer"]

ModuleT = TypeVar("ModuleT", bound=Module)


class Optimizer(abc.ABC):
    """Base class of optimizers: ``compiled = await opt.compile(student, trainset=...)``.

    ``compile`` never changes ``student``: it returns an optimized copy (demos,
    instructions) that saves with ``compiled.save(path)`` like any module.
    After it, ``optimizer.stats`` says what it cost.
    """

    stats: OptimizerStats
    """What the latest ``compile`` cost: model calls, metric calls, tokens, time."""

    @abc.abstractmethod
    async def compile(
        self,
        student: ModuleT,
        *,
        trainset: Sequence[Example],
        valset: Sequence[Example] | None = None,
        teacher: Module | None = None,
    ) -> ModuleT:
        """Return an optimized copy of ``student``.

        Raises:
            TrioDSPyError: the trainset is empty or its examples do not mark inputs.
        """

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def check_trainset(trainset: Sequence[Example], what: str = "trainset") -> list[Example]:
    """``trainset`` as a list, refusing an empty one or examples without input keys.

    Raises:
        TrioDSPyError: naming the first bad example and how to fix it.
    """
    examples = list(trainset)
    if not examples:
        raise TrioDSPyError(f"the {what} is empty: an optimizer needs examples to learn from")
    for i, example in enumerate(examples):
        if not isinstance(example, Example) or example._input_keys is None:
            raise TrioDSPyError(
                f"{what} example {i} does not say which fields are inputs: build it as "
                "td.Example(...).with_inputs('question', ...) or load it with "
                "td.datasets.load_jsonl(path, input_keys=[...])"
            )
    return examples


def matching_predictors(student: Module, teacher: Module) -> dict[str, Any]:
    """The teacher's predictors by name, checked against the student's.

    Raises:
        TrioDSPyError: the two programs do not have the same predictors.
    """
    ours = [n for n, _ in student.named_predictors()]
    theirs = dict(teacher.named_predictors())
    if ours != list(theirs):
        raise TrioDSPyError(
            "the teacher must have the same predictors as the student: "
            f"student has {', '.join(ours) or 'none'}, teacher has {', '.join(theirs) or 'none'}"
        )
    for name, predictor in student.named_predictors():
        if predictor.signature.fields.keys() != theirs[name].signature.fields.keys():
            raise TrioDSPyError(
                f"the teacher's predictor {name} has fields "
                f"{', '.join(theirs[name].signature.fields)}, the student's has "
                f"{', '.join(predictor.signature.fields)}"
            )
    return theirs
