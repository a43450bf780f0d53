"""``KNNFewShot``: for each call, demos bootstrapped from the nearest training examples.

As in DSPy, compiling does no work: the compiled program, on every call,
embeds the call's inputs, takes the ``k`` training examples most similar to
them, runs :class:`~trio_dspy.optimizers.BootstrapFewShot` on those
neighbours (its teacher runs are concurrent) and answers with the program it
compiled. The trainset is embedded once, on the first call, and shared by
every program compiled from the same optimizer.

Where this differs from DSPy, on purpose:

* a bootstrap is cached per neighbour set (and model): a later call with the
  same neighbours reuses its demos instead of running the teacher again, and
  concurrent calls with the same neighbours share one bootstrap
  (``cache_size=0`` restores DSPy's bootstrap on every call);
* ties between equally similar examples go to the earlier one in the trainset
  (DSPy's ``argsort`` is not stable, and it reverses its ascending order, so
  its ties fall in no specified order);
* the trainset is embedded on first use, inside trio, rather than in the
  constructor (which stays sync); a failed embedding is tried again by the
  next call;
* ``similarity="cosine"`` is offered next to DSPy's dot product;
* the program bootstraps a copy of the student taken at compile time (DSPy
  keeps the student itself, so changing it later changes the program), and a
  teacher that does not match the student is refused at compile time rather
  than on the first call.
"""

from __future__ import annotations

import collections
from collections.abc import Sequence
from typing import Any

import trio

from ..checkpoint import entered
from ..modules.module import Module
from ..primitives import Example
from ..settings import current
from .base import ModuleT, Optimizer, check_trainset, matching_predictors
from .bootstrap import BootstrapFewShot
from .neighbours import Index, Similarity, Vectorizer
from .stats import OptimizerStats

__all__ = ["KNNFewShot"]


def accept_every_trace(example: Example, prediction: Any, trace: Any = None) -> bool:
    """The metric of a bootstrap without one (DSPy's ``metric=None``): every run passes."""
    return True


class KNNFewShot(Optimizer):
    """Few-shot demos chosen per call from the ``k`` training examples nearest its inputs.

    ::

        knn = td.KNNFewShot(3, trainset, embed)     # embed(texts) -> vectors
        program = await knn.compile(td.ChainOfThought("question -> answer"))
        await program(question="...")               # demos from the 3 nearest examples

    Args:
        k: neighbours per call (all the trainset when it is smaller).
        trainset: examples marking their inputs; the text embedded for one is
            ``"key: value | key: value"`` over its input fields, and for a call
            the same over its inputs in call order (pass them in the same order).
        vectorizer: ``vectorizer(texts) -> vectors``, async, or sync (it then
            runs in a worker thread): one vector of numbers per text.
        similarity: ``"dot"`` (DSPy's raw dot product: the cosine only if the
            vectorizer returns unit vectors) or ``"cosine"``.
        cache_size: bootstrapped programs kept per compiled program, by
            neighbour set and model, least recently used dropped first;
            ``0`` bootstraps on every call, as DSPy does.
        **few_shot_bootstrap_args: passed to :class:`BootstrapFewShot` for each
            bootstrap (``metric`` defaults to accepting every run, as DSPy's
            ``None`` does; ``max_bootstrapped_demos=4``, ``max_labeled_demos=16``).

    Raises:
        TrioDSPyError: the trainset is empty or does not mark inputs.
        ValueError: ``k`` is below 1, ``cache_size`` below 0, or ``similarity`` unknown.
        TypeError: the vectorizer is not callable, or a bootstrap argument is unknown.

    :attr:`stats` stays empty: compiling calls no model; the cost is paid per call.
    """

    def __init__(
        self,
        k: int,
        trainset: Sequence[Example],
        vectorizer: Vectorizer,
        *,
        similarity: Similarity = "dot",
        cache_size: int = 256,
        **few_shot_bootstrap_args: Any,
    ) -> None:
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be a whole number of at least 1, got {k!r}")
        if cache_size < 0:
            raise ValueError(f"cache_size must be 0 or more, got {cache_size}")
        args = dict(few_shot_bootstrap_args)
        if args.get("metric") is None:
            args["metric"] = accept_every_trace
        BootstrapFewShot(**args)  # refuse a misspelt or invalid argument now, not per call
        self.k = k
        self.trainset = check_trainset(trainset)
        self.similarity = similarity
        self.cache_size = cache_size
        self.bootstrap_args = args
        self.index = Index(self.trainset, vectorizer, similarity)
        """The trainset's vectors, shared by every program compiled from this optimizer."""
        self.stats = OptimizerStats()

    async def compile(
        self,
        student: ModuleT,
        *,
        trainset: Sequence[Example] | None = None,
        valset: Sequence[Example] | None = None,
        teacher: Module | None = None,
    ) -> ModuleT:
        """A copy of ``student`` that bootstraps its demos from each call's neighbours.

        ``trainset``, when given, replaces the constructor's for this program
        (and is embedded on its first call); ``valset`` is not used.
        ``teacher`` (default: the student with labelled demos) runs in each
        bootstrap; it must have the student's predictors. The copy's own
        predictors stay empty: each call runs a freshly compiled copy.

        Raises:
            TrioDSPyError: the trainset is unusable, or the teacher does not
                match the student.
        """
        await entered()
        self.stats = OptimizerStats()
        index = self.index
        if trainset is not None and not _same(trainset, self.trainset):
            index = Index(check_trainset(trainset), index.vectorizer, self.similarity)
        if teacher is not None:
            matching_predictors(student, teacher)
            teacher = teacher.deepcopy()
        compiled = student.reset_copy()
        # The program each bootstrap compiles: a copy of its own, since the
        # compiled copy's ``forward`` is replaced below.
        nearest = NearestDemos(
            index, self.k, student.reset_copy(), teacher, self.bootstrap_args, self.cache_size
        )
        compiled.forward = nearest
        return compiled

    def __repr__(self) -> str:
        return f"KNNFewShot(k={self.k}, similarity={self.similarity!r})"


def _same(given: Sequence[Example], ours: list[Example]) -> bool:
    return len(given) == len(ours) and all(a is b for a, b in zip(given, ours))


class NearestDemos:
    """The ``forward`` of a program compiled by :class:`KNNFewShot`.

    Copies of the program (``deepcopy``, ``reset_copy``) share it, and so
    share its cache of bootstrapped programs.
    """

    def __init__(
        self,
        index: Index,
        k: int,
        program: Module,
        teacher: Module | None,
        bootstrap_args: dict[str, Any],
        cache_size: int,
    ) -> None:
        self.index = index
        self.k = k
        self.program = program
        self.teacher = teacher
        self.bootstrap_args = bootstrap_args
        self.cache_size = cache_size
        self.bootstraps = 0
        """Bootstraps run (the calls that did not find their neighbours' demos cached)."""
        self._cache: collections.OrderedDict[tuple[tuple[int, ...], int], tuple[Any, Module]]
        self._cache = collections.OrderedDict()
        self._pending: dict[tuple[tuple[int, ...], int], trio.Event] = {}

    async def __call__(self, **inputs: Any) -> Any:
        """Answer with the program bootstrapped on the neighbours of ``inputs``.

        Raises:
            VectorizerError: the vectorizer's answer is unusable.
            TrioDSPyError: the bootstrap failed (see :class:`BootstrapFewShot`).
            Exception: whatever the vectorizer or the program raised.
        """
        neighbours = await self.index.nearest(inputs, self.k)
        program = await self.program_for(tuple(neighbours))
        return await program(**inputs)

    async def program_for(self, neighbours: tuple[int, ...]) -> Module:
        """The program compiled on these neighbours (in this order), bootstrapping if needed.

        A cached bootstrap is reused only under the same model; while one
        runs, other calls wanting it wait for it rather than start another.
        A bootstrap that fails or is cancelled is not cached: the waiting
        calls then try again themselves.

        Raises:
            TrioDSPyError: the bootstrap failed.
        """
        lm = current().lm
        key = (neighbours, id(lm))
        while True:
            cached = self._cache.get(key)
            # The model is kept with the entry: an id can be reused after its
            # model is gone, and demos from another model must not be served.
            if cached is not None and cached[0] is lm:
                self._cache.move_to_end(key)
                return cached[1]
            pending = self._pending.get(key)
            if pending is None or not self.cache_size:
                break
            await pending.wait()
        done = trio.Event()
        self._pending.setdefault(key, done)
        try:
            program = await self._bootstrap(neighbours)
            if self.cache_size:
                self._cache[key] = (lm, program)
                self._cache.move_to_end(key)
                while len(self._cache) > self.cache_size:
                    self._cache.popitem(last=False)
        finally:
            if self._pending.get(key) is done:
                del self._pending[key]
            done.set()
        return program

    async def _bootstrap(self, neighbours: tuple[int, ...]) -> Module:
        self.bootstraps += 1
        examples = [self.index.trainset[i] for i in neighbours]
        optimizer = BootstrapFewShot(**self.bootstrap_args)
        return await optimizer.compile(self.program, trainset=examples, teacher=self.teacher)

    def __deepcopy__(self, memo: dict[int, Any]) -> NearestDemos:
        return self
