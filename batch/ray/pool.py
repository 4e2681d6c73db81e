"""A pool of Ray actors that score chunks in input order and survive the loss of actors and nodes.

Why the engine schedules the chunks itself: the output must be byte-identical to an
uninterrupted run, and a lost node is ordinary on a cluster (spot instances, preemption).
With a Ray Data pipeline, losing one node ended the whole run; here the order, the retry of
exactly the lost chunk and the point of giving up are decided in one place that the tests
exercise. Each chunk is one actor call; the driver keeps at most one chunk on each actor and
a bounded number of chunks ahead of the next one to write. When an actor is lost (its node
died, its process was killed), the chunk it held goes back to the queue and the next free
actor scores it: every actor runs the same ``Classifier`` with the same threads and token
budget on the same chunk, so the retried chunk gives the same probabilities. A replacement
actor is requested at once and joins when the cluster has room for it. The run stops only
when no actor is left and none starts within ``wait_seconds`` (one line; the caller's output
is untouched), or when a chunk was in flight on ``MAX_ATTEMPTS`` actors that died while
their nodes stayed up (a chunk that kills its actor, for example by exhausting its memory,
must not kill every actor of the cluster in turn).

An exception raised by the model (a damaged model, a CUDA error) is not a loss: it is
raised at once, as the local engine would.
"""

from __future__ import annotations

import heapq
import os
import re
import time
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, Iterator, List, Optional, Tuple

from mlbert.runtime.classifier import load
from mlbert.errors import MlbError, first_line, raise_errors

# How many actors may die (their node still alive) while holding the same chunk before the
# run stops: such a chunk is likely what kills them.
MAX_ATTEMPTS = 3
# Replacements asked for, per actor of the pool, before a pool that keeps losing actors
# gives up asking (then the run ends when the last actor is gone).
REPLACEMENTS_PER_ACTOR = 10
# Once the first actor is up, how long the others get to start before the work begins
# without them (they still join later, when the cluster has room).
START_GRACE_SECONDS = 10.0
# How long to wait for an actor when none is left, unless MLB_RAY_ACTOR_WAIT says otherwise.
DEFAULT_ACTOR_WAIT_SECONDS = 60.0


class RayUnavailable(MlbError):
    """No actor can be had (none left, none starting in time), or a chunk keeps losing its actors."""


def actor_wait_seconds() -> float:
    """``MLB_RAY_ACTOR_WAIT`` (seconds to wait for an actor when none is left), default 60."""
    value = os.environ.get("MLB_RAY_ACTOR_WAIT", "").strip()
    if not value:
        return DEFAULT_ACTOR_WAIT_SECONDS
    try:
        seconds = float(value)
    except ValueError:
        raise MlbError(f"MLB_RAY_ACTOR_WAIT={value!r}: expected a number of seconds") from None
    if seconds < 0:
        raise MlbError(f"MLB_RAY_ACTOR_WAIT={value!r}: expected a number of seconds, at least 0")
    return seconds


# Words of Ray's reasons for an actor that went down with its node (then the chunk it held
# is not to blame for its death).
NODE_DEATH_WORDS = ("died", "dead", "terminated", "heartbeat", "preempt", "drain")


def loss_reason(exc: BaseException) -> str:
    """The line of a Ray actor error that says why the actor is gone, in a few words.

    Ray's message is a general first line ("The actor died unexpectedly ..."), then indented
    fields (class_name, pid, ip, ...), then the reason ("The actor died because its node has
    died. Node Id: ...", "... killed by `ray.kill`"); an unreachable actor's is one line
    ending in the RPC error.
    """
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    reasons = [line for line in lines[1:] if not re.match(r"^[a-z_]+: ", line)]
    why = reasons[-1] if reasons else first_line(exc)
    if "temporarily unavailable" in why:
        why = "unreachable: " + re.sub(r"\s*rpc_code:.*$", "", why.rsplit("RPC error: ", 1)[-1])
    return why.split(" Node Id:")[0][:160]


@dataclass
class ActorSpec:
    """What every actor of a pool is: decided once per process, the same for replacements."""

    model_ref: Any  # ObjectRef of the model file's bytes
    device: str
    threads: int
    token_budget: Optional[int]
    num_gpus: float


class ScoreActor:
    """One ``Classifier`` built from the model's bytes (nothing written to disk); scores one chunk a call.

    ``model`` is a one-element list holding the ObjectRef (a list so that Ray passes the
    reference, not the value). A failure to load is kept and raised by ``ready`` so that the
    driver receives it as an ordinary task error carrying the ``MlbError``.
    """

    def __init__(self, model: List[Any], device: str, threads: int, token_budget: Optional[int]):
        import ray

        self.failure: Optional[BaseException] = None
        self.node = ray.util.get_node_ip_address()
        try:
            self.classifier = load(ray.get(model[0]), device, threads=threads, token_budget=token_budget)
            self.classifier.warm_up()
        except Exception as exc:  # handed to the driver by ready()
            self.failure = exc

    def ready(self) -> Tuple[str, str, int]:
        """(node address, execution provider, token budget), or the error that stopped the model from loading."""
        if self.failure is not None:
            raise self.failure
        return self.node, self.classifier.provider, self.classifier.token_budget

    def score(self, work: Any) -> Any:
        """``work.score(classifier)``: a chunk of texts, or a slice of a Parquet file read here."""
        return work.score(self.classifier)

    def call(self, function: Any, *args: Any) -> Any:
        """``function(*args)`` on this actor's machine (for example: can it open an input file?)."""
        return function(*args)


@dataclass
class Work:
    """One chunk: ``index`` is its place in the output (0, 1, 2, ...); ``payload`` has ``score(classifier)``.

    ``payload`` None means there is nothing to score (every row of the chunk is an error record).
    """

    index: int
    payload: Any
    context: Any = None  # what the caller needs to write the chunk (ids, row numbers); stays on the driver


@dataclass
class _Actor:
    number: int
    handle: Any
    ready_ref: Any
    node: str = "?"
    ready: bool = False
    busy: Optional[int] = None  # index of the chunk in flight

    @property
    def label(self) -> str:
        return f"#{self.number} on {self.node}"


@dataclass
class _Flight:
    """The state of one ``scored_in_order`` run."""

    queue: List[int] = field(default_factory=list)  # heap of chunk indices waiting for an actor
    works: Dict[int, Work] = field(default_factory=dict)  # read, not yet handed back
    done: Dict[int, Tuple[Any, str]] = field(default_factory=dict)
    running: Dict[Any, Tuple[int, _Actor]] = field(default_factory=dict)  # ObjectRef -> (index, actor)
    attempts: Dict[int, int] = field(default_factory=dict)
    alone_since: Optional[float] = None  # when the pool last had no actor ready


class ActorPool:
    """``size`` ``ScoreActor``s; ``scored_in_order`` hands back each chunk's result in input order."""

    def __init__(self, ray: Any, spec: ActorSpec, size: int, wait_seconds: Optional[float] = None):
        self.ray = ray
        self.spec = spec
        self.size = size
        self.wait_seconds = actor_wait_seconds() if wait_seconds is None else wait_seconds
        self.actors: List[_Actor] = []
        self.notes: List[str] = []  # one line per lost actor; the job takes them into its summary
        self.last_loss = ""  # the latest "Ray actor #N on HOST lost (why)", for the error if the run stops
        self.provider = "?"  # the execution provider and token budget of the actors, once one is up
        self.token_budget: Optional[int] = spec.token_budget
        self._created = 0
        self._remote = ray.remote(ScoreActor).options(
            num_cpus=spec.threads, num_gpus=spec.num_gpus, max_restarts=0, max_task_retries=0,
        )
        self._loss_types = tuple(t for t in (
            getattr(ray.exceptions, "RayActorError", None),
            getattr(ray.exceptions, "ObjectLostError", None),
            getattr(ray.exceptions, "NodeDiedError", None),
            getattr(ray.exceptions, "WorkerCrashedError", None),
        ) if t is not None)

    # -- actors ----------------------------------------------------------------------------
    def _add_actor(self) -> None:
        self._created += 1
        handle = self._remote.remote([self.spec.model_ref], self.spec.device, self.spec.threads,
                                     self.spec.token_budget)
        self.actors.append(_Actor(self._created, handle, handle.ready.remote()))

    def start(self) -> None:
        """Start the actors; return when all are up, or the first one plus a grace period."""
        while len(self.actors) < self.size:
            self._add_actor()
        deadline = time.monotonic() + self.wait_seconds
        grace_end: Optional[float] = None
        while any(not a.ready for a in self.actors):
            now = time.monotonic()
            if grace_end is None and any(a.ready for a in self.actors):
                grace_end = now + START_GRACE_SECONDS
            end = grace_end if grace_end is not None else deadline
            if now >= end:
                break
            starting = {a.ready_ref: a for a in self.actors if not a.ready}
            found, _ = self.ray.wait(list(starting), num_returns=1, timeout=end - now)
            for ref in found:
                self._on_ready(starting[ref])
        if not any(a.ready for a in self.actors):
            raise RayUnavailable(f"--engine ray: no Ray actor started within {self.wait_seconds:.0f} s "
                                 f"({self._needs()}; MLB_RAY_ACTOR_WAIT sets the wait)")

    def _needs(self) -> str:
        free = self.ray.available_resources()
        if self.spec.num_gpus:
            return (f"each actor needs {self.spec.threads} CPU and {self.spec.num_gpus:g} GPU; the cluster has "
                    f"{free.get('CPU', 0):g} CPU and {free.get('GPU', 0):g} GPU free")
        return f"each actor needs {self.spec.threads} CPU; the cluster has {free.get('CPU', 0):g} free"

    def _on_ready(self, actor: _Actor) -> None:
        """An actor finished starting: ready, lost on the way (replaced), or failed (raised)."""
        try:
            actor.node, self.provider, self.token_budget = self.ray.get(actor.ready_ref)
            actor.ready = True
        except self._loss_types as exc:
            if getattr(exc, "actor_init_failed", False):  # e.g. mlbert not installed on that node
                if raise_errors():
                    raise
                raise self.failure(exc) from None
            self._lose(actor, exc, None)
        except Exception as exc:
            if raise_errors():
                raise
            raise self.failure(exc) from None

    def _lose(self, actor: _Actor, exc: BaseException, requeued: Optional[int]) -> bool:
        """Forget a dead actor, note it, ask for a replacement; True if the actor is not to blame
        (its node died or became unreachable, rather than the actor's process alone)."""
        self.actors.remove(actor)
        try:
            self.ray.kill(actor.handle, no_restart=True)
        except Exception:  # already gone with its node
            pass
        why = loss_reason(exc)
        node_died = "node" in why.lower() and any(word in why.lower() for word in NODE_DEATH_WORDS)
        if actor.ready:  # a replacement that never started (its node went too) is replaced without a note
            self.last_loss = f"Ray actor {actor.label} lost{' with its node' if node_died else ''} ({why})"
            retried = f"; chunk {requeued + 1} retried on the remaining actors" if requeued is not None else ""
            self.notes.append(self.last_loss + retried)
        if self._created < self.size * (1 + REPLACEMENTS_PER_ACTOR):
            self._add_actor()
        return node_died or isinstance(exc, getattr(self.ray.exceptions, "ActorUnavailableError", ()))

    def failure(self, exc: BaseException) -> MlbError:
        """The MlbError an actor raised (bad device, damaged model), else one line about Ray."""
        seen = set()
        stack: List[Any] = [exc]
        while stack:
            current = stack.pop()
            if current is None or id(current) in seen:
                continue
            seen.add(id(current))
            if isinstance(current, MlbError) and not isinstance(current, self.ray.exceptions.RayError):
                return current
            stack.extend([getattr(current, "cause", None), current.__cause__, current.__context__])
        cause = getattr(exc, "cause", None)
        text = first_line(cause) if isinstance(cause, BaseException) else first_line(exc)
        for line in str(exc).splitlines():  # a message carrying a worker's traceback: keep its error line
            if re.match(r"^[\w.]*(Error|Exception): ", line):
                text = line.strip()[-300:]
        return MlbError(f"--engine ray: a Ray actor failed ({text}); MLB_RAISE_ERRORS=1 shows the traceback")

    # -- scoring ---------------------------------------------------------------------------
    def scored_in_order(self, works: Iterable[Work], ahead: Optional[int] = None) -> Iterator[Tuple[Work, Any, str]]:
        """(work, result, actor label) for each work in order; at most ``ahead`` works read but not handed back.

        ``works`` must number its items 0, 1, 2, ... A work without payload is handed back
        with result None and label "".
        """
        limit = ahead or max(4, 3 * self.size)
        source = iter(works)
        flight = _Flight()
        next_out, exhausted = 0, False
        while True:
            while not exhausted and len(flight.works) < limit:
                work = next(source, None)
                if work is None:
                    exhausted = True
                    break
                flight.works[work.index] = work
                if work.payload is None:
                    flight.done[work.index] = (None, "")
                else:
                    heapq.heappush(flight.queue, work.index)
            self._dispatch(flight)
            while next_out in flight.done:
                result, label = flight.done.pop(next_out)
                yield flight.works.pop(next_out), result, label
                next_out += 1
            if exhausted and not flight.works:
                return
            if flight.queue or flight.running:
                self._wait(flight)

    def _dispatch(self, flight: _Flight) -> None:
        for actor in self.actors:
            if not flight.queue:
                return
            if actor.ready and actor.busy is None:
                index = heapq.heappop(flight.queue)
                actor.busy = index
                flight.running[actor.handle.score.remote(flight.works[index].payload)] = (index, actor)

    def _wait(self, flight: _Flight) -> None:
        """Wait for one result or one actor to start; handle what arrives."""
        starting = {a.ready_ref: a for a in self.actors if not a.ready}
        refs = list(flight.running) + list(starting)
        timeout: Optional[float] = None
        if not any(a.ready for a in self.actors):
            flight.alone_since = flight.alone_since or time.monotonic()
            timeout = max(0.0, flight.alone_since + self.wait_seconds - time.monotonic())
        else:
            flight.alone_since = None
        found, _ = self.ray.wait(refs, num_returns=1, timeout=timeout) if refs else ([], [])
        if not found:
            raise self._no_actor(flight)
        ref = found[0]
        if ref in starting:
            self._on_ready(starting[ref])
            return
        index, actor = flight.running.pop(ref)
        actor.busy = None
        try:
            flight.done[index] = (self.ray.get(ref), actor.label)
        except self._loss_types as exc:
            node_lost = self._lose(actor, exc, index)
            self._requeue(flight, index, blame=not node_lost)
        except Exception as exc:
            if raise_errors():
                raise
            raise self.failure(exc) from None

    def _requeue(self, flight: _Flight, index: int, blame: bool) -> None:
        attempts = flight.attempts.get(index, 0) + int(blame)
        flight.attempts[index] = attempts
        if attempts >= MAX_ATTEMPTS:
            raise RayUnavailable(f"--engine ray: chunk {index + 1} was in flight on {attempts} Ray actors that died "
                                 f"({self.last_loss}); it is not sent to another (if it exhausts an actor's memory, "
                                 "a smaller --ray-batch-size helps)")
        heapq.heappush(flight.queue, index)

    def _no_actor(self, flight: _Flight) -> RayUnavailable:
        waiting = f" {min(flight.queue) + 1}" if flight.queue else ""
        lost = f" ({self.last_loss})" if self.last_loss else ""
        return RayUnavailable(f"--engine ray: no Ray actor left to score chunk{waiting}{lost}, and none started "
                              f"within {self.wait_seconds:.0f} s ({self._needs()}; MLB_RAY_ACTOR_WAIT sets the wait)")

    def on_every_actor(self, function: Any, *args: Any) -> List[Any]:
        """``function(*args)`` on every actor that is up; the answers of those that answered."""
        calls = [actor.handle.call.remote(function, *args) for actor in self.actors if actor.ready]
        answers = []
        for ref in calls:
            try:
                answers.append(self.ray.get(ref))
            except self._loss_types:  # a lost actor is noticed, and replaced, when it next gets a chunk
                continue
        return answers

    def close(self) -> None:
        """Stop every actor now (they also stop when the driver exits), freeing their CPUs and GPUs."""
        for actor in self.actors:
            try:
                self.ray.kill(actor.handle, no_restart=True)
            except Exception:  # gone already
                pass
        self.actors = []

    def take_notes(self) -> List[str]:
        notes, self.notes = self.notes, []
        return notes
