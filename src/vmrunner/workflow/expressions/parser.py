"""Parse a bare ``${{ }}`` expression into a :mod:`.nodes` tree.

Grammar, loosest binding first (every binary operator is left-associative)::

    expression := or
    or         := and ('||' and)*
    and        := equality ('&&' equality)*
    equality   := relational (('==' | '!=') relational)*
    relational := unary (('<' | '<=' | '>' | '>=') unary)*
    unary      := '!'* postfix
    postfix    := primary ('.' NAME | '.' '*' | '[' expression ']' | '[' '*' ']')*
    primary    := literal | NAME '(' arguments? ')' | NAME | '(' expression ')'

Limits, as GitHub's: an expression of more than :data:`MAX_LENGTH` characters, or whose
tree is more than :data:`MAX_DEPTH` nodes deep, is rejected. Parentheses, calls and
brackets nested more than :data:`MAX_DEPTH` deep are rejected too (this also bounds the
parser's recursion).

Function names are checked, with their arity, at parse time; named-values (contexts) only
when the caller says which are allowed.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from .errors import ExpressionSyntaxError, SyntaxKind
from .functions import lookup
from .lexer import T, Token, tokenize
from .limits import MAX_DEPTH, MAX_LENGTH
from .nodes import And, Call, Compare, Index, Literal, NamedValue, Node, Not, Or, Wildcard

_PRECEDENCE = {T.OR: 1, T.AND: 2, T.EQ: 3, T.NE: 3, T.LT: 4, T.LE: 4, T.GT: 4, T.GE: 4}


def depth_error(pos: int, src: str) -> ExpressionSyntaxError:
    """The error for an expression nested deeper than :data:`MAX_DEPTH`."""
    return ExpressionSyntaxError(f"Exceeded max expression depth {MAX_DEPTH}", pos, source=src)


class _Parser:
    def __init__(self, src: str, allowed: frozenset[str] | None) -> None:
        self.src = src
        self.tokens = tokenize(src)
        self.i = 0
        self.allowed = allowed
        self.nesting = 0

    def peek(self, ahead: int = 0) -> Token:
        return self.tokens[min(self.i + ahead, len(self.tokens) - 1)]

    def advance(self) -> Token:
        token = self.peek()
        self.i = min(self.i + 1, len(self.tokens) - 1)
        return token

    def error(self, what: str, token: Token) -> ExpressionSyntaxError:
        message = f"{what}: '{token.text}'. Located at position {token.pos + 1}"
        kind: SyntaxKind = "lexing" if token.type is T.UNEXPECTED else "parsing"
        return ExpressionSyntaxError(
            f"{message} within expression: {self.src}", token.pos, source=self.src, kind=kind
        )

    def unexpected(self, token: Token) -> ExpressionSyntaxError:
        if token.type is T.EOF:
            return self.error("Unexpected end of expression", self.tokens[-2])
        return self.error("Unexpected symbol", token)

    def expect(self, kind: T) -> Token:
        token = self.advance()
        if token.type is not kind:
            raise self.unexpected(token)
        return token

    @contextmanager
    def nested(self, token: Token) -> Iterator[None]:
        self.nesting += 1
        try:
            if self.nesting > MAX_DEPTH:
                raise depth_error(token.pos, self.src)
            yield
        finally:
            self.nesting -= 1

    def parse(self) -> Node:
        if self.peek().type is T.EOF:
            return Literal(None, pos=0)
        node = self.binary(1)
        if self.peek().type is not T.EOF:
            raise self.unexpected(self.peek())
        return node

    def binary(self, min_precedence: int) -> Node:
        left = self.unary()
        while (precedence := _PRECEDENCE.get(self.peek().type, 0)) >= min_precedence:
            op = self.advance()
            right = self.binary(precedence + 1)
            if op.type in (T.AND, T.OR):
                left = self.chain(op, [left, right], precedence)
            else:
                left = Compare(op.type.value, left, right, pos=op.pos)
        return left

    def chain(self, op: Token, operands: list[Node], precedence: int) -> Node:
        """Gather ``a && b && c`` (or ``||``) into one n-ary node."""
        while self.peek().type is op.type:
            self.advance()
            operands.append(self.binary(precedence + 1))
        kind = And if op.type is T.AND else Or
        return kind(tuple(operands), pos=op.pos)

    def unary(self) -> Node:
        bangs: list[Token] = []
        while self.peek().type is T.NOT:
            bangs.append(self.advance())
        node = self.postfix()
        for bang in reversed(bangs):
            node = Not(node, pos=bang.pos)
        return node

    def postfix(self) -> Node:
        node = self.primary()
        while self.peek().type in (T.DOT, T.LBRACKET):
            opener = self.advance()
            node = self.dotted(node, opener) if opener.type is T.DOT else self.bracket(node, opener)
        return node

    def dotted(self, target: Node, dot: Token) -> Node:
        token = self.advance()
        if token.type is T.STAR:
            return Index(target, Wildcard(pos=token.pos), dotted=True, pos=dot.pos)
        if token.type is T.IDENT:
            return Index(target, Literal(token.text, pos=token.pos), dotted=True, pos=dot.pos)
        raise self.unexpected(token)

    def bracket(self, target: Node, opener: Token) -> Node:
        key: Node
        if self.peek().type is T.STAR:
            key = Wildcard(pos=self.advance().pos)
        else:
            with self.nested(opener):
                key = self.binary(1)
        self.expect(T.RBRACKET)
        return Index(target, key, pos=opener.pos)

    def primary(self) -> Node:
        token = self.advance()
        if token.type is T.LITERAL:
            return Literal(token.value, pos=token.pos)
        if token.type is T.IDENT and self.peek().type is T.LPAREN:
            return self.call(token)
        if token.type is T.IDENT:
            if self.allowed is not None and token.text.lower() not in self.allowed:
                raise self.error("Unrecognized named-value", token)
            return NamedValue(token.text, pos=token.pos)
        if token.type is T.LPAREN:
            with self.nested(token):
                node = self.binary(1)
            self.expect(T.RPAREN)
            return node
        raise self.unexpected(token)

    def call(self, name: Token) -> Node:
        spec = lookup(name.text)
        if spec is None:
            raise self.error("Unrecognized function", name)
        opener = self.advance()
        args: list[Node] = []
        with self.nested(opener):
            if self.peek().type is T.RPAREN:
                self.advance()
            else:
                args = self.arguments()
        if len(args) < spec.min_args:
            raise self.error("Too few parameters supplied", name)
        if len(args) > spec.max_args:
            raise self.error("Too many parameters supplied", name)
        if spec.odd_args and len(args) % 2 == 0:
            what = "Even number of parameters supplied, requires an odd number of parameters"
            raise self.error(what, name)
        return Call(name.text, tuple(args), pos=name.pos)

    def arguments(self) -> list[Node]:
        args = [self.binary(1)]
        while (token := self.advance()).type is T.COMMA:
            args.append(self.binary(1))
        if token.type is not T.RPAREN:
            raise self.unexpected(token)
        return args


def _too_deep(node: Node) -> Node | None:
    """The first node found deeper than :data:`MAX_DEPTH`, if any."""
    stack = [(node, 1)]
    while stack:
        current, level = stack.pop()
        if level > MAX_DEPTH:
            return current
        stack.extend((child, level + 1) for child in current.children())
    return None


def parse(src: str, *, allowed_contexts: Iterable[str] | None = None) -> Node:
    """Parse the inside of ``${{ }}`` into a tree; raises :class:`ExpressionSyntaxError`.

    An empty (or blank) expression is ``Literal(None)``. When ``allowed_contexts`` is
    given, a named-value not in it (compared case-insensitively) is an error, as GitHub
    reports it; otherwise any name is accepted here and checked at evaluation. Does not
    evaluate anything.
    """
    if len(src) > MAX_LENGTH:
        raise ExpressionSyntaxError(f"Exceeded max expression length {MAX_LENGTH}", 0, source=src)
    allowed = None if allowed_contexts is None else frozenset(c.lower() for c in allowed_contexts)
    node = _Parser(src, allowed).parse()
    deep = _too_deep(node)
    if deep is not None:
        raise depth_error(deep.pos, src)
    return node
