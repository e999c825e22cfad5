"""lme4 formulas without data: the response, the fixed part and the bars.

formulaic cannot read ``(x | g)`` (its ``|`` separates the parts of a
multi-part formula), so this module finds the random-effects terms itself, as
lme4's ``findbars``/``nobars`` do, expands ``||`` and ``g1/g2``, and leaves
plain formulas for formulaic to materialise. It never looks at data.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import FormulaError

__all__ = ["BarTerm", "ParsedFormula", "parse_formula"]


@dataclass(frozen=True)
class BarTerm:
    """One random-effects term after expansion.

    Attributes
    ----------
    expr : str
        Left of the bar with an explicit intercept state: ``"1 + Days"``, ``"0 + Days"``, ``"1"``.
    group : str
        The grouping factor as lme4 names it: ``"Subject"``, ``"cask:batch"``.
    factors : tuple of str
        Data columns forming the grouping factor, in the order of ``group``.
    correlated : bool
        False for the pieces of a ``||`` term.
    """

    expr: str
    group: str
    factors: tuple[str, ...]
    correlated: bool = True

    @property
    def intercept(self) -> bool:
        """Whether the term has a random intercept."""
        return self.expr.startswith("1")


@dataclass(frozen=True)
class ParsedFormula:
    """A formula split into response, fixed part and random-effects terms."""

    formula: str
    response: str
    fixed: str
    bars: tuple[BarTerm, ...]


def _scan(text: str, what: str) -> list[tuple[int, str]]:
    """Positions of top-level-relevant characters, skipping strings, backticks and brackets' insides.

    Returns ``(position, char)`` for every ``(``, ``)``, ``|``, ``+``, ``-`` and ``~``
    outside quotes and backticks; raises on unbalanced parentheses.
    """
    out = []
    quote = ""
    stack: list[str] = []
    for i, ch in enumerate(text):
        if quote:
            if ch == quote:
                quote = ""
            continue
        if ch in "'\"`":
            quote = ch
            continue
        if ch in "()|+-~[]":
            if ch in "([":
                stack.append(ch)
            elif ch in ")]":
                opener = "(" if ch == ")" else "["
                if not stack:
                    kind = "parentheses" if ch == ")" else "brackets"
                    raise FormulaError(f"unbalanced {kind} in {what} {text!r}: a {ch!r} at position {i} closes nothing.")
                if stack.pop() != opener:
                    raise FormulaError(f"mismatched brackets in {what} {text!r}: the {ch!r} at position {i} closes a different bracket.")
            out.append((i, ch))
    if quote:
        raise FormulaError(f"unterminated {quote} quote in {what} {text!r}.")
    if stack:
        kind, sym = ("parentheses", "(") if "(" in stack else ("brackets", "[")
        raise FormulaError(f"unbalanced {kind} in {what} {text!r}: {stack.count(sym)} {sym!r} never closed.")
    return out


def _split_top(text: str, seps: str) -> list[tuple[str, str]]:
    """Split ``text`` at top-level ``+``/``-`` into (sign, piece) pairs."""
    pieces: list[tuple[str, str]] = []
    depth = 0
    sign = "+"
    start = 0
    for i, ch in _scan(text, "formula"):
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        elif depth == 0 and ch in seps:
            # a sign after `e` in a number literal (1e-5) or after `**` is not a term separator
            before = text[:i].rstrip()
            if ch == "-" and before.endswith(("*", "/", "^", "(", "~")):
                continue
            if re.search(r"\d[eE]$", before):
                continue
            if ch == "-" and sign == "+" and pieces and not text[start:i].strip():
                sign = "-"  # `x + -1` reads as `x - 1`, as in R
                start = i + 1
                continue
            pieces.append((sign, text[start:i].strip()))
            sign = ch
            start = i + 1
    pieces.append((sign, text[start:].strip()))
    return pieces


def _strip_outer(text: str) -> str:
    """Remove parentheses enclosing the whole of ``text``."""
    text = text.strip()
    while text.startswith("(") and text.endswith(")"):
        depth = 0
        for i, ch in _scan(text, "term"):
            if ch == "(":
                depth += 1
            elif ch == ")":
                depth -= 1
                if depth == 0 and i != len(text) - 1:
                    return text
        text = text[1:-1].strip()
    return text


def _top_bar(text: str) -> tuple[int, int] | None:
    """Position and width (1 or 2) of a ``|``/``||`` at the top level of ``text``."""
    depth = 0
    for i, ch in _scan(text, "term"):
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        elif ch == "|" and depth == 0:
            return i, 2 if text[i + 1 : i + 2] == "|" else 1
    return None


_NAME = r"(?:`[^`]+`|[^\W\d][\w.]*)"


def _group_factors(group: str, term: str) -> list[tuple[str, tuple[str, ...]]]:
    """Expand a grouping side: ``g``, ``g1:g2``, ``g1/g2/g3``."""
    group = group.strip()
    if not group:
        raise FormulaError(f"the random-effects term {term!r} has nothing right of the bar: write (... | group).")
    # whitespace around ':' and '/' does not matter; inside a name it is an error unless backticked
    compact = "".join(
        piece if piece.startswith("`") else re.sub(r"\s*([/:])\s*", r"\1", piece) for piece in re.split(r"(`[^`]*`)", group)
    )
    parts = compact.split("/")
    for part in parts:
        if not re.fullmatch(rf"{_NAME}(?::{_NAME})*", part):
            hint = " A name with spaces needs backticks: `my group`." if re.fullmatch(r"[\w. ]+", part) else ""
            raise FormulaError(
                f"the grouping side {group!r} of {term!r} is not a column name, an interaction g1:g2 "
                f"or a nesting g1/g2 of names; compute the grouping column in the data first.{hint}"
            )
    # lme4's findbars: g1/g2/g3 -> g3:g2:g1, g2:g1, g1 (innermost first)
    out = []
    for k in range(len(parts), 0, -1):
        names = [p.strip("`") for part in reversed(parts[:k]) for p in re.findall(_NAME, part)]
        out.append((":".join(names), tuple(names)))
    return out


def _intercept_state(pieces: list[tuple[str, str]], where: str) -> tuple[bool, list[str]]:
    """Intercept flag and the other terms of a ``+``/``-`` separated expression."""
    intercept = True
    terms: list[str] = []
    for sign, piece in pieces:
        p = _strip_outer(piece)
        if p == "1":
            intercept = sign == "+"
        elif p == "0":
            if sign == "+":
                intercept = False
        elif sign == "-":
            raise FormulaError(f"removing the term {piece!r} with '-' is not supported in {where}.")
        elif piece:
            terms.append(piece)
    return intercept, terms


def _bar_terms(inner: str, term: str) -> list[BarTerm]:
    pos, width = _top_bar(inner)  # type: ignore[misc]
    left, right = inner[:pos].strip(), inner[pos + width :].strip()
    if not left:
        raise FormulaError(f"the random-effects term {term!r} has nothing left of the bar: write (1 | group) for an intercept.")
    if _top_bar(right) is not None:
        raise FormulaError(f"the random-effects term {term!r} has more than one bar.")
    if "|" in left:
        raise FormulaError(f"the random-effects term {term!r} contains a bar inside its left side.")
    pieces = _split_top(left, "+-")
    if any(not piece for k, (_, piece) in enumerate(pieces) if k > 0 or pieces[0][0] == "-" or len(pieces) == 1):
        raise FormulaError(
            f"the random-effects term {term!r} has an empty term left of the bar (an operator with nothing after it)."
        )
    intercept, terms = _intercept_state(pieces, f"the random-effects term {term!r}")
    if not intercept and not terms:
        raise FormulaError(f"the random-effects term {term!r} has no columns: it removes the intercept and adds nothing.")
    if width == 2:
        # lme4's expandDoubleVerts: one term per label of terms(~ left), so x*z gives x, z and x:z
        labels = [label for t in terms for label in _term_labels(t, term)]
        exprs = (["1"] if intercept else []) + [f"0 + {t}" for t in dict.fromkeys(labels)]
    else:
        exprs = [("1" if intercept else "0") + "".join(f" + {t}" for t in terms)]
    groups = _group_factors(right, term)
    # lme4 expands || before /: (x || a/b) -> (1|b:a), (1|a), (0+x|b:a), (0+x|a)
    return [BarTerm(expr=expr, group=label, factors=factors, correlated=width == 1) for expr in exprs for label, factors in groups]


_OPERATOR = re.compile(r"[*:/^]|%in%")


def _term_labels(piece: str, term: str) -> list[str]:
    """The terms a piece stands for, as R's ``terms()`` labels them (``x*z`` -> ``x``, ``z``, ``x:z``)."""
    bare = re.sub(r"`[^`]*`", "_", piece)
    depth = 0
    top = []
    for ch in bare:
        depth += ch in "(["
        depth -= ch in ")]"
        top.append(ch if depth == 0 else "_")
    if not _OPERATOR.search("".join(top)):
        return [piece]
    import formulaic

    try:
        parsed = formulaic.Formula(piece)
    except Exception as exc:  # formulaic raises several types for bad syntax
        raise FormulaError(f"cannot read {piece!r} in the random-effects term {term!r}: {exc}") from None
    out = []
    for t in parsed:
        names = []
        for factor in t.factors:
            expr = str(factor.expr)
            if str(getattr(factor.eval_method, "value", factor.eval_method)) == "literal":
                break
            lookup = str(getattr(factor.eval_method, "value", "")) == "lookup"
            names.append(f"`{expr}`" if lookup and not re.fullmatch(r"[^\W\d][\w.]*", expr) else expr)
        else:
            out.append(":".join(names))
    return out


def _groups(text: str) -> list[tuple[int, int, bool]]:
    """``(start, end, is_call)`` of every parenthesised group of ``text``, outside quotes and backticks."""
    out = []
    opened: list[tuple[int, bool]] = []
    for i, ch in _scan(text, "term"):
        if ch == "(":
            before = text[:i].rstrip()
            opened.append((i, bool(before) and (before[-1].isalnum() or before[-1] in "_.`")))
        elif ch == ")" and opened:
            start, call = opened.pop()
            out.append((start, i, call))
    return out


def _power_in_identity(text: str) -> bool:
    """Whether an ``I(...)`` call of ``text`` contains R's power operator ``^``."""
    for start, end, call in _groups(text):
        if call and re.search(r"(?<![\w.])I\s*$", text[:start]) and any(ch == "^" for _, ch in _scan_all(text[start:end])):
            return True
    return False


def _scan_all(text: str) -> list[tuple[int, str]]:
    """Every character outside quotes and backticks."""
    out = []
    quote = ""
    for i, ch in enumerate(text):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"`":
            quote = ch
        else:
            out.append((i, ch))
    return out


def _check_fixed_piece(piece: str, formula: str) -> None:
    """Reject bars and empty parentheses hidden inside a fixed-effects term."""
    for start, end, call in _groups(piece):
        inner = piece[start + 1 : end]
        if call:
            continue
        if not inner.strip():
            raise FormulaError(f"the formula {formula!r} has empty parentheses in the term {piece!r}.")
        if _top_bar(inner) is not None:
            raise FormulaError(
                f"the random-effects term ({inner.strip()}) in {piece!r} must be added to the formula with '+', "
                "not combined with other terms or operators."
            )


def parse_formula(formula: str) -> ParsedFormula:
    """Split an lme4 formula into response, fixed part and random-effects terms.

    Parameters
    ----------
    formula : str
        For instance ``"Reaction ~ Days + (Days | Subject)"``.

    Returns
    -------
    ParsedFormula

    Raises
    ------
    FormulaError
        When the formula cannot be read; the message says what and where.
    """
    if not isinstance(formula, str):
        raise FormulaError(f"a formula must be a string, not {type(formula).__name__}.")
    text = formula.strip()
    if not text:
        raise FormulaError("the formula is empty: write it as 'response ~ predictors + (terms | group)'.")
    tildes = []
    depth = 0
    for i, ch in _scan(text, "formula"):
        depth += (ch in "([") - (ch in ")]")
        if ch == "~":
            if depth:
                raise FormulaError(f"the '~' of {formula!r} is inside brackets: write 'response ~ predictors' without enclosing them.")
            tildes.append(i)
    if not tildes:
        raise FormulaError(f"the formula {formula!r} has no '~': write it as 'response ~ predictors + (terms | group)'.")
    if len(tildes) > 1:
        raise FormulaError(f"the formula {formula!r} has more than one '~' (at positions {tildes}).")
    lhs, rhs = text[: tildes[0]].strip(), text[tildes[0] + 1 :].strip()
    if not lhs:
        raise FormulaError(f"the formula {formula!r} has no response: lmm needs a response on the left of ~.")
    if not rhs:
        raise FormulaError(f"the formula {formula!r} has nothing right of '~'.")
    for part, what in [(lhs, "response"), (rhs, "right-hand side")]:
        if _power_in_identity(part):
            raise FormulaError(
                f"the {what} of {formula!r} uses '^' inside I(): in Python '^' is exclusive or. Write I(x**2) for a power."
            )
    fixed: list[tuple[str, str]] = []
    bars: list[BarTerm] = []
    for sign, piece in _split_top(rhs, "+-"):
        if not piece:
            if sign == "+" and not fixed and not bars:
                continue  # a leading sign
            raise FormulaError(f"the formula {formula!r} has an empty term (two operators in a row or a trailing one).")
        inner = _strip_outer(piece)
        if inner != piece and _top_bar(inner) is not None:
            if sign == "-":
                raise FormulaError(f"a random-effects term cannot be removed with '-': {piece!r}.")
            bars.extend(_bar_terms(inner, piece))
        elif _top_bar(piece) is not None:
            raise FormulaError(f"the bar in {piece!r} must be inside parentheses: write ({piece}).")
        else:
            _check_fixed_piece(piece, formula)
            fixed.append((sign, piece))
    intercept, others = _intercept_state(fixed, "the fixed part")
    fixed_text = ("1" if intercept else "0") + "".join(f" + {o}" for o in others)
    return ParsedFormula(formula=formula, response=lhs, fixed=fixed_text, bars=tuple(bars))
