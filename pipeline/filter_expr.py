"""A small, safe row-filter language over scores tables.

    dim_quality >= 0.2 and q.hands_correct >= 0.5
    not (score < 0 or media_type == "video")
    m.hands_correct >= 0.5
    z_score > 1 and l.overall["excellent"] >= 0.5

Grammar: comparisons (<, <=, >, >=, ==, !=, chained), `and`, `or`, `not`, parentheses,
numbers, strings, column names, `q.<question_id>`, the p_yes of that question in the row's own
checklist (rows of one file can come from different checklists, e.g. images and videos), and
`m.<question_id>`, that question's answer mass (the `answer_mass` column), `c.<question_id>`, its
calibrated probability (`p_cal`, null for a question without a calibration), and
`l.<question_id>["<level>"]`, a rating question's probability of one level (`level_probs`; its
expected value is `q.<question_id>`). z-scores (`z_score`, `z_dim_<name>`) are columns like any
other. The text is parsed with Python's `ast` and only whitelisted nodes are compiled;
nothing is ever evaluated as Python.

Nulls follow SQL: a comparison with a missing value (a failed row's score, a question the
row's checklist lacks) is unknown, `not unknown` is unknown, and only rows whose condition
is true are kept.
"""
from __future__ import annotations

import ast
import difflib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from schemas.checklist import Checklist
from schemas.user_error import UserError

Evaluator = Callable[[pa.Table], pa.Array]
# per-question prefixes: `q.<id>` reads p_yes, `m.<id>` answer_mass, `c.<id>` p_cal (calibrated questions)
QUESTION_COLUMNS = {"q": "p_yes", "m": "answer_mass", "c": "p_cal"}
LEVEL_PREFIX, LEVEL_COLUMN = "l", "level_probs"  # l.<id>["<level>"] reads one level's probability
_COMPARE = {ast.Lt: pc.less, ast.LtE: pc.less_equal, ast.Gt: pc.greater, ast.GtE: pc.greater_equal,
            ast.Eq: pc.equal, ast.NotEq: pc.not_equal}


class FilterError(UserError):
    """The filter text is not valid; the message names the offending part."""


@dataclass(frozen=True)
class Condition:
    text: str  # source text of this top-level `and` term
    evaluate: Evaluator  # table -> boolean array (nulls = unknown)


@dataclass(frozen=True)
class RowFilter:
    text: str
    conditions: list[Condition]  # the top-level `and` terms, in order
    columns: list[str]  # columns the filter reads

    def keep_mask(self, table: pa.Table) -> np.ndarray:
        mask = np.ones(table.num_rows, dtype=bool)
        for cond in self.conditions:
            mask &= _true(cond.evaluate(table))
        return mask

    def drop_reasons(self, table: pa.Table) -> np.ndarray:
        """Per row: None when kept, else the first condition that is not true (with
        '(no value)' when it is unknown), so every dropped row has exactly one reason."""
        reasons = np.full(table.num_rows, None, dtype=object)
        undecided = np.ones(table.num_rows, dtype=bool)
        for cond in self.conditions:
            value = cond.evaluate(table)
            false, null = _false(value) & undecided, _null(value) & undecided
            reasons[false] = cond.text
            reasons[null] = f"{cond.text} (no value)"
            undecided &= ~(false | null)
        return reasons


def _true(a: pa.Array) -> np.ndarray:
    return np.asarray(pc.fill_null(a, False), dtype=bool)


def _false(a: pa.Array) -> np.ndarray:
    return np.asarray(pc.fill_null(pc.invert(a), False), dtype=bool)


def _null(a: pa.Array) -> np.ndarray:
    return np.asarray(pc.is_null(a), dtype=bool)


def parse_filter(text: str, schema: pa.Schema, checklists: dict[str, Checklist]) -> RowFilter:
    """Compile `text` against a scores schema and its checklists (keyed by checklist name)."""
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        raise FilterError(f"cannot parse filter {text!r}: {exc.msg}") from None
    compiler = _Compiler(text.strip(), schema, checklists)
    terms = _and_terms(tree.body)
    conditions = [Condition(compiler.source(t), compiler.boolean(t)) for t in terms]
    return RowFilter(text.strip(), conditions, sorted(compiler.columns))


def _and_terms(node: ast.expr) -> list[ast.expr]:
    if isinstance(node, ast.BoolOp) and isinstance(node.op, ast.And):
        return [t for v in node.values for t in _and_terms(v)]
    return [node]


class _Compiler:
    def __init__(self, text: str, schema: pa.Schema, checklists: dict[str, Checklist]):
        self.text, self.schema, self.checklists = text, schema, checklists
        self.columns: set[str] = set()

    def source(self, node: ast.expr) -> str:
        return ast.get_source_segment(self.text, node) or ast.unparse(node)

    def boolean(self, node: ast.expr) -> Evaluator:
        if isinstance(node, ast.BoolOp):
            parts = [self.boolean(v) for v in node.values]
            combine = pc.and_kleene if isinstance(node.op, ast.And) else pc.or_kleene

            def bool_op(t: pa.Table) -> pa.Array:
                out = parts[0](t)
                for part in parts[1:]:
                    out = combine(out, part(t))
                return out
            return bool_op
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            inner = self.boolean(node.operand)
            return lambda t: pc.invert(inner(t))
        if isinstance(node, ast.Compare):
            return self.compare(node)
        raise FilterError(f"{self.source(node)!r} is not a condition; use comparisons joined by and/or/not")

    def compare(self, node: ast.Compare) -> Evaluator:
        for op in node.ops:
            if type(op) not in _COMPARE:
                raise FilterError(f"operator {type(op).__name__} in {self.source(node)!r} is not allowed")
        operands = [self.value(node.left), *(self.value(c) for c in node.comparators)]
        nodes = [node.left, *node.comparators]
        if all(isinstance(n, (ast.Constant, ast.UnaryOp)) for n in nodes):
            raise FilterError(f"{self.source(node)!r} compares constants only; name a column, q.<question_id> "
                              "or m.<question_id>")
        for (kind_a, _), (kind_b, _) in zip(operands, operands[1:]):
            if kind_a != kind_b:
                raise FilterError(f"{self.source(node)!r} compares a {kind_a} with a {kind_b}")
        steps = [(_COMPARE[type(op)], a[1], b[1]) for op, a, b in zip(node.ops, operands, operands[1:])]

        def compare(t: pa.Table) -> pa.Array:
            out = None
            for fn, left, right in steps:  # a < b < c means a < b and b < c
                step = fn(left(t), right(t))
                out = step if out is None else pc.and_kleene(out, step)
            return out
        return compare

    def value(self, node: ast.expr) -> tuple[str, Callable[[pa.Table], pa.Array | pa.Scalar]]:
        """(kind, evaluator) with kind 'number' or 'text'."""
        negative = isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub)
        literal = node.operand if negative else node
        if isinstance(literal, ast.Constant):
            value = literal.value
            if isinstance(value, str) and not negative:
                text = pa.scalar(value)
                return "text", lambda t: text
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise FilterError(f"{self.source(node)!r}: only numbers and quoted strings are allowed")
            number = pa.scalar(-float(value) if negative else float(value))
            return "number", lambda t: number
        if isinstance(node, ast.Name):
            return self.column(node.id)
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in QUESTION_COLUMNS:
            return "number", self.question(node.value.id, node.attr)
        if (isinstance(node, ast.Subscript) and isinstance(node.value, ast.Attribute)
                and isinstance(node.value.value, ast.Name) and node.value.value.id == LEVEL_PREFIX):
            if not (isinstance(node.slice, ast.Constant) and isinstance(node.slice.value, str)):
                raise FilterError(f"{self.source(node)!r}: name the level as a quoted word, e.g. "
                                  f'{LEVEL_PREFIX}.{node.value.attr}["excellent"]')
            return "number", self.level(node.value.attr, node.slice.value)
        raise FilterError(f"{self.source(node)!r} is not allowed: use numbers, strings, column names, "
                          f'q.<question_id>, m.<question_id> or {LEVEL_PREFIX}.<question_id>["<level>"]')

    def column(self, name: str) -> tuple[str, Evaluator]:
        if name not in self.schema.names:
            hint = difflib.get_close_matches(name, self.schema.names, n=1)
            raise FilterError(f"unknown column {name!r}" + (f" (did you mean {hint[0]!r}?)" if hint else "")
                              + f"; columns: {', '.join(self.schema.names)}")
        typ = self.schema.field(name).type
        if pa.types.is_integer(typ) or pa.types.is_floating(typ):
            kind = "number"
        elif pa.types.is_string(typ) or pa.types.is_large_string(typ):
            kind = "text"
        else:
            prefix = next((p for p, c in QUESTION_COLUMNS.items() if c == name), None)
            raise FilterError(f"column {name!r} is of type {typ} and cannot be compared"
                              + (f"; use {prefix}.<question_id> for one question's {name}" if prefix else ""))
        self.columns.add(name)
        return kind, lambda t: t[name]

    def question(self, prefix: str, qid: str) -> Evaluator:
        column = QUESTION_COLUMNS[prefix]
        index = {name: c.question_ids.index(qid) for name, c in self.checklists.items() if qid in c.question_ids}
        if not index:
            known = sorted({i for c in self.checklists.values() for i in c.question_ids})
            hint = difflib.get_close_matches(qid, known, n=1)
            raise FilterError(f"unknown question {prefix}.{qid}" + (f" (did you mean {prefix}.{hint[0]}?)" if hint else "")
                              + f"; questions of {', '.join(sorted(self.checklists))}: {', '.join(known)}")
        if column not in self.schema.names:
            why = ("(written only with a calibrated checklist: `vrscore calibrate`, then `rescore` with its checklist)"
                   if prefix == "c" else "(written by a vrscore version before it); rescore cannot add it: score again")
            raise FilterError(f"{prefix}.{qid} reads the {column} column, which these scores do not have {why}")
        self.columns.update(("checklist", column))
        return lambda t: question_value(t, column, index)


    def level(self, qid: str, word: str) -> Evaluator:
        """A rating question's probability of level `word`, in every checklist that rates `qid`."""
        index: dict[str, tuple[int, int]] = {}
        for name, c in self.checklists.items():
            q = next((q for q in c.questions if q.id == qid and q.answer == "rating"), None)
            if q is not None:
                folded = [w.strip().lower() for w in q.levels or []]
                if word.strip().lower() not in folded:
                    raise FilterError(f'{LEVEL_PREFIX}.{qid}["{word}"]: {qid!r} of {name!r} has levels '
                                      f"{q.levels}")
                index[name] = (c.question_ids.index(qid), folded.index(word.strip().lower()))
        if not index:
            rated = sorted({q.id for c in self.checklists.values() for q in c.questions if q.answer == "rating"})
            raise FilterError(f"{LEVEL_PREFIX}.{qid}: no checklist of these scores rates a question {qid!r} "
                              f"(rating questions: {', '.join(rated) or 'none'})")
        if LEVEL_COLUMN not in self.schema.names:
            raise FilterError(f"{LEVEL_PREFIX}.{qid} reads the {LEVEL_COLUMN} column, which these scores do not have")
        self.columns.update(("checklist", LEVEL_COLUMN))
        return lambda t: level_value(t, index)


def level_value(table: pa.Table, index: dict[str, tuple[int, int]]) -> pa.Array:
    """One level's probability per row: `index` maps checklist name -> (question, level) position;
    null where the row's checklist does not rate that question or the row has no levels."""
    outer = table[LEVEL_COLUMN].combine_chunks()
    inner = outer.values
    names = table["checklist"].to_pylist()
    q_pos = np.array([index.get(n, (-1, -1))[0] if n is not None else -1 for n in names], dtype=np.int64)
    l_pos = np.array([index.get(n, (-1, -1))[1] if n is not None else -1 for n in names], dtype=np.int64)
    outer_off = outer.offsets.to_numpy()
    valid = (q_pos >= 0) & (q_pos < np.diff(outer_off)) & ~np.asarray(outer.is_null(), dtype=bool)
    q_at = np.where(valid, outer_off[:-1] + q_pos, 0)
    inner_off = inner.offsets.to_numpy()
    inner_null = np.asarray(inner.is_null(), dtype=bool) if len(inner) else np.zeros(0, dtype=bool)
    valid &= ~inner_null[q_at] if len(inner) else False
    valid &= l_pos < (inner_off[q_at + 1] - inner_off[q_at]) if len(inner) else False
    picked = inner.values.to_numpy(zero_copy_only=False)[inner_off[q_at[valid]] + l_pos[valid]]
    out = np.zeros(len(q_pos))
    out[valid] = picked.astype(np.float32).astype(str).astype(np.float64)  # as question_value: typed 0.3 == 0.3
    return pa.array(out, mask=~valid, type=pa.float64())


def question_value(table: pa.Table, column: str, index: dict[str, int]) -> pa.Array:
    """`column` (a per-question list) of one question per row: `index` maps checklist name ->
    position of the question; null where the row's checklist lacks it or the row has no value."""
    lists = table[column].combine_chunks()
    names = table["checklist"].to_pylist()
    offsets = lists.offsets.to_numpy()
    lengths = np.diff(offsets)
    pos = np.array([index.get(n, -1) if n is not None else -1 for n in names], dtype=np.int64)
    valid = (pos >= 0) & (pos < lengths) & ~np.asarray(lists.is_null(), dtype=bool)
    at = np.where(valid, offsets[:-1] + pos, 0)
    if len(lists.values):  # a null inside the list (p_cal of an uncalibrated question) is no value
        valid &= ~np.asarray(lists.values.is_null(), dtype=bool)[at]
    picked = lists.values.to_numpy(zero_copy_only=False)[at[valid]]
    out = np.zeros(len(pos))
    # values are stored as float32: widen through their shortest decimal form, so that a
    # stored 0.3 compares equal to the 0.3 a user types (not as 0.30000001192...).
    out[valid] = picked.astype(np.float32).astype(str).astype(np.float64)
    return pa.array(out, mask=~valid, type=pa.float64())
