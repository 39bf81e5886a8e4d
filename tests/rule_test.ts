import assert from "node:assert/strict";
import {
  type BinaryOp,
  compileRule,
  evaluate,
  parseRule,
  printRule,
  type Rule,
  RuleError,
  ruleNames,
} from "../rule/mod.ts";

/** The tree as an s-expression without columns: `(and a (not b))`. */
function shape(rule: Rule): string {
  switch (rule.kind) {
    case "const":
      return String(rule.value);
    case "name":
      return rule.name;
    case "not":
      return `(not ${shape(rule.operand)})`;
    case "binary":
      return `(${rule.op} ${shape(rule.left)} ${shape(rule.right)})`;
  }
}

function parsed(source: string): string {
  return shape(parseRule(source));
}

/** Parses `source` expecting a RuleError; answers it. */
function failure(source: string): RuleError {
  try {
    parseRule(source);
  } catch (e) {
    assert.ok(e instanceof RuleError, `not a RuleError: ${e}`);
    assert.ok(e instanceof Error);
    assert.equal(e.name, "RuleError");
    assert.ok(
      e.message.startsWith(`at column ${e.column}: `),
      `message without its column: ${e.message}`,
    );
    return e;
  }
  assert.fail(`${JSON.stringify(source)} parsed but should not`);
}

/** Evaluates with the given true names; answers the result and the names seen. */
function run(source: string, trueNames: string[]) {
  const seen: string[] = [];
  const value = evaluate(parseRule(source), (name) => {
    seen.push(name);
    return trueNames.includes(name);
  });
  return { value, seen };
}

Deno.test("every operator parses in each of its spellings", () => {
  const spellings: Record<BinaryOp, string[]> = {
    and: ["∧", "and", "&&", "&"],
    or: ["∨", "or", "||", "|"],
    implies: ["⇒", "=>"],
    follows: ["⇐", "<="],
    equiv: ["≡", "=="],
    differs: ["≢", "!="],
  };
  for (const [op, list] of Object.entries(spellings)) {
    for (const s of list) {
      assert.equal(parsed(`a ${s} b`), `(${op} a b)`, s);
      assert.equal(parsed(`(a)${s}(b)`), `(${op} a b)`, `${s} without spaces`);
    }
  }
  for (const s of ["¬", "not ", "!", "~"]) {
    assert.equal(parsed(`${s}a`), "(not a)", s);
  }
  assert.equal(parsed("a&&b"), "(and a b)");
  assert.equal(parsed("a||b"), "(or a b)");
  assert.equal(parsed("a!=b"), "(differs a b)");
  assert.equal(parsed("!a"), "(not a)");
  assert.equal(parsed("true"), "true");
  assert.equal(parsed("false"), "false");
  assert.equal(parsed("¬true ∨ false"), "(or (not true) false)");
});

Deno.test("names: letters, digits, _, - and . after a letter or _", () => {
  assert.equal(parsed("down0"), "down0");
  assert.equal(parsed("_x ∧ a.b-c_1"), "(and _x a.b-c_1)");
  // Words only count as operators when they stand alone.
  assert.equal(
    parsed("nota ∧ andy ∧ or_ ∧ truey"),
    "(and (and (and nota andy) or_) truey)",
  );
  assert.equal(parsed("straße ∨ día"), "(or straße día)");
  assert.equal(parsed("a\n∧\tb"), "(and a b)");
  assert.deepEqual(
    parseRule("  sessions"),
    { kind: "name", name: "sessions", column: 3 },
  );
});

Deno.test("precedence: ¬ over ∧ ∨ over ⇒ ⇐ over ≡ ≢", () => {
  assert.equal(parsed("¬a ∧ b"), "(and (not a) b)");
  assert.equal(parsed("¬(a ∧ b)"), "(not (and a b))");
  assert.equal(parsed("a ∧ b ⇒ c ∨ d"), "(implies (and a b) (or c d))");
  assert.equal(parsed("a ⇐ b ∧ c"), "(follows a (and b c))");
  assert.equal(parsed("a ⇒ b ≡ c ⇐ d"), "(equiv (implies a b) (follows c d))");
  assert.equal(parsed("a ∨ b ≢ c"), "(differs (or a b) c)");
  assert.equal(
    parsed("not a and b => c == d"),
    "(equiv (implies (and (not a) b) c) d)",
  );
  assert.equal(parsed("((a))"), "a");
  assert.equal(parsed("¬¬a"), "(not (not a))");
});

Deno.test("associativity: ⇒ to the right, ⇐ ≡ ≢ ∧ ∨ to the left", () => {
  assert.equal(parsed("a ⇒ b ⇒ c"), "(implies a (implies b c))");
  assert.equal(
    parsed("a => b => c => d"),
    "(implies a (implies b (implies c d)))",
  );
  assert.equal(parsed("a ⇐ b ⇐ c"), "(follows (follows a b) c)");
  assert.equal(parsed("a ≡ b ≡ c"), "(equiv (equiv a b) c)");
  assert.equal(parsed("a ≡ b ≢ c ≡ d"), "(equiv (differs (equiv a b) c) d)");
  assert.equal(parsed("a ∧ b ∧ c"), "(and (and a b) c)");
  assert.equal(parsed("a ∨ b ∨ c"), "(or (or a b) c)");
  assert.equal(parsed("a ∧ (b ∨ c)"), "(and a (or b c))");
});

Deno.test("mixing ∧ with ∨ or ⇒ with ⇐ at one level is an error at the operator", () => {
  const junction =
    "mixing ∧ and ∨ at one level needs parentheses: write (a ∧ b) ∨ c or a ∧ (b ∨ c)";
  const chain =
    "mixing ⇒ and ⇐ at one level needs parentheses: write (a ⇒ b) ⇐ c or a ⇒ (b ⇐ c)";
  const cases: [string, number, string][] = [
    ["a ∧ b ∨ c", 7, junction],
    ["a ∨ b ∧ c", 7, junction],
    ["x ∧ y ∧ z or w", 11, junction],
    ["(a && b || c)", 9, junction],
    ["a ≡ b ∧ c ∨ d", 11, junction],
    ["a ⇒ b ⇐ c", 7, chain],
    ["a <= b => c", 8, chain],
    ["p ⇒ q ⇒ r ⇐ s", 11, chain],
  ];
  for (const [source, column, message] of cases) {
    const e = failure(source);
    assert.equal(e.column, column, source);
    assert.equal(e.message, `at column ${column}: ${message}`, source);
  }
  // With parentheses both readings are fine.
  assert.equal(parsed("(a ∧ b) ∨ c"), "(or (and a b) c)");
  assert.equal(parsed("(a ⇒ b) ⇐ c"), "(follows (implies a b) c)");
});

Deno.test("errors: what was expected, what was found, where", () => {
  let e = failure("sessions ∧ ∧ down0");
  assert.equal(e.column, 12);
  assert.equal(e.expected, 'a name, "¬" or "("');
  assert.equal(
    e.message,
    'at column 12: expected a name, "¬" or "(" but found "∧"',
  );

  e = failure("a and");
  assert.equal(e.column, 6);
  assert.equal(
    e.message,
    'at column 6: expected a name, "¬" or "(" but found the end of the rule',
  );

  e = failure("a b");
  assert.equal(e.column, 3);
  assert.equal(
    e.message,
    'at column 3: expected an operator or the end of the rule but found "b"',
  );
  assert.equal(failure("a ∧ b true").column, 7);
  assert.equal(failure("¬").column, 2);
  assert.equal(failure("()").column, 2);
  assert.equal(failure("a ∧ ()").column, 6);
});

Deno.test("errors: columns count Unicode code points", () => {
  // "𝒳" is one code point but two UTF-16 units.
  const e = failure("𝒳 ∧ 𝒴 ∧ ∧");
  assert.equal(e.column, 9);
  assert.deepEqual(ruleNames(parseRule("𝒳 ∧ 𝒴")), [
    { name: "𝒳", column: 1 },
    { name: "𝒴", column: 5 },
  ]);
});

Deno.test("errors: unknown characters", () => {
  let e = failure("a @ b");
  assert.equal(e.column, 3);
  assert.match(e.message, /^at column 3: unknown character "@": /);
  assert.match(e.message, /¬ ∧ ∨ ⇒ ⇐ ≡ ≢/);
  e = failure("a = b");
  assert.equal(e.column, 3);
  assert.match(e.message, /"==" for ≡ or "=>" for ⇒/);
  e = failure("a < b");
  assert.match(e.message, /"<=" for ⇐/);
  e = failure("a ∧ 1b");
  assert.equal(e.column, 5);
  assert.match(e.message, /a name starts with a letter or "_"/);
  assert.equal(failure("a ∧ b;").column, 6);
  assert.equal(failure("a → b").column, 3);
  assert.equal(failure("a ∧ -b").column, 5);
});

Deno.test("errors: unbalanced parentheses", () => {
  let e = failure("(a ∧ b");
  assert.equal(e.column, 7);
  assert.equal(
    e.message,
    'at column 7: expected an operator or ")" to close "(" at column 1 but found the end of the rule',
  );
  e = failure("x ∨ ((a ∧ b) ∨ c");
  assert.equal(e.column, 17);
  assert.match(e.message, /to close "\(" at column 5/);
  e = failure("(a ∧ b c)");
  assert.equal(e.column, 8);
  e = failure("a ∧ b)");
  assert.equal(e.column, 6);
  assert.equal(
    e.message,
    'at column 6: ")" has no matching "(": remove it or add "(" before it',
  );
  assert.equal(failure(")").column, 1);
});

Deno.test("errors: an empty rule says so", () => {
  for (const source of ["", "   ", "\n\t"]) {
    const e = failure(source);
    assert.equal(e.column, 1);
    assert.match(e.message, /^at column 1: the rule is empty/);
  }
});

Deno.test("ruleNames: every occurrence in order with its column", () => {
  assert.deepEqual(ruleNames(parseRule("(night ∧ down0) ∨ (day ∧ down1)")), [
    { name: "night", column: 2 },
    { name: "down0", column: 10 },
    { name: "day", column: 20 },
    { name: "down1", column: 26 },
  ]);
  assert.deepEqual(
    ruleNames(parseRule("a ⇒ b ⇒ a")).map((n) => n.name),
    ["a", "b", "a"],
  );
  assert.deepEqual(
    ruleNames(parseRule("a ⇐ b ⇐ c ≡ ¬d")).map((n) => n.column),
    [1, 5, 9, 14],
  );
  assert.deepEqual(ruleNames(parseRule("true ∧ ¬false")), []);
});

Deno.test("evaluate: short-circuit, left to right, once per reached occurrence", () => {
  assert.deepEqual(run("a ∧ b", []), { value: false, seen: ["a"] });
  assert.deepEqual(run("a ∧ b", ["a"]), { value: false, seen: ["a", "b"] });
  assert.deepEqual(run("a ∨ b", ["a"]), { value: true, seen: ["a"] });
  assert.deepEqual(run("a ∨ b", []), { value: false, seen: ["a", "b"] });
  assert.deepEqual(run("a ⇒ b", []), { value: true, seen: ["a"] });
  assert.deepEqual(run("a ⇒ b", ["a"]), { value: false, seen: ["a", "b"] });
  assert.deepEqual(run("a ⇐ b", ["a"]), { value: true, seen: ["a"] });
  assert.deepEqual(run("a ⇐ b", ["b"]), { value: false, seen: ["a", "b"] });
  assert.deepEqual(run("a ≡ b", []), { value: true, seen: ["a", "b"] });
  assert.deepEqual(run("a ≢ b", ["a"]), { value: true, seen: ["a", "b"] });
  assert.deepEqual(run("¬a ∧ b", ["a"]), { value: false, seen: ["a"] });
  assert.deepEqual(run("false ∧ a", ["a"]), { value: false, seen: [] });
  assert.deepEqual(run("true ∨ a", []), { value: true, seen: [] });
  assert.deepEqual(run("a ∧ b ∧ c", ["a"]), { value: false, seen: ["a", "b"] });
  assert.deepEqual(run("a ∨ b ∨ c", ["c"]), {
    value: true,
    seen: ["a", "b", "c"],
  });
  // a ⇒ (b ⇒ c): c is reached only when a and b hold.
  assert.deepEqual(run("a ⇒ b ⇒ c", ["a"]), { value: true, seen: ["a", "b"] });
  assert.deepEqual(run("a ⇒ b ⇒ c", ["a", "b"]), {
    value: false,
    seen: ["a", "b", "c"],
  });
  // (a ⇐ b) ⇐ c: a true answers at once.
  assert.deepEqual(run("a ⇐ b ⇐ c", ["a"]), { value: true, seen: ["a"] });
  // A repeated name is asked again at each reached occurrence.
  assert.deepEqual(run("a ∧ a ∧ a", ["a"]), {
    value: true,
    seen: ["a", "a", "a"],
  });
});

Deno.test("evaluate: the design example attaches down1 by day, down0 by night", () => {
  const rule = "(night ∧ down0) ∨ (day ∧ down1)";
  // Resource managers (down0, down1) answer true when reached.
  assert.deepEqual(run(rule, ["day", "down0", "down1"]), {
    value: true,
    seen: ["night", "day", "down1"],
  });
  assert.deepEqual(run(rule, ["night", "down0", "down1"]), {
    value: true,
    seen: ["night", "down0"],
  });
  // Neither day nor night: nothing attached, the request is refused.
  assert.deepEqual(run(rule, ["down0", "down1"]), {
    value: false,
    seen: ["night", "day"],
  });
  // The same in ASCII.
  assert.deepEqual(
    run("(night and down0) or (day and down1)", ["day", "down0", "down1"]).seen,
    ["night", "day", "down1"],
  );
});

Deno.test("truth tables of ∧ ∨ ⇒ ⇐ ≡ ≢ ¬", () => {
  const table: Record<string, (a: boolean, b: boolean) => boolean> = {
    "∧": (a, b) => a && b,
    "∨": (a, b) => a || b,
    "⇒": (a, b) => !a || b,
    "⇐": (a, b) => a || !b,
    "≡": (a, b) => a === b,
    "≢": (a, b) => a !== b,
  };
  const expected: Record<string, boolean[]> = {
    // rows: (F,F) (F,T) (T,F) (T,T)
    "∧": [false, false, false, true],
    "∨": [false, true, true, true],
    "⇒": [true, true, false, true],
    "⇐": [true, false, true, true],
    "≡": [true, false, false, true],
    "≢": [false, true, true, false],
  };
  for (const op of Object.keys(table)) {
    const rows: boolean[] = [];
    for (const a of [false, true]) {
      for (const b of [false, true]) {
        const byName = run(`a ${op} b`, [
          ...(a ? ["a"] : []),
          ...(b ? ["b"] : []),
        ]);
        const byConst = evaluate(parseRule(`${a} ${op} ${b}`), () => {
          throw new Error("no names here");
        });
        assert.equal(byName.value, byConst, `${a} ${op} ${b}`);
        assert.equal(byName.value, table[op](a, b), `${a} ${op} ${b}`);
        rows.push(byName.value);
      }
    }
    assert.deepEqual(rows, expected[op], op);
  }
  assert.equal(run("¬a", []).value, true);
  assert.equal(run("¬a", ["a"]).value, false);
});

/** Removes each matching pair of parentheses in turn: the texts left. */
function withoutOnePair(text: string): string[] {
  const chars = Array.from(text);
  const open: number[] = [];
  const out: string[] = [];
  for (let i = 0; i < chars.length; i++) {
    if (chars[i] === "(") open.push(i);
    if (chars[i] === ")") {
      const j = open.pop()!;
      out.push(chars.filter((_, k) => k !== i && k !== j).join(""));
    }
  }
  return out;
}

function assertRoundTrip(rule: Rule, label: string): void {
  for (const ascii of [false, true]) {
    const text = printRule(rule, { ascii });
    let again: Rule;
    try {
      again = parseRule(text);
    } catch (e) {
      assert.fail(
        `${label}: printed ${JSON.stringify(text)} does not parse: ${e}`,
      );
    }
    assert.equal(shape(again), shape(rule), `${label}: printed ${text}`);
    assert.equal(
      printRule(again, { ascii }),
      text,
      `${label}: printing is stable`,
    );
    // Minimal: dropping any one pair of parentheses breaks or changes the rule.
    for (const fewer of withoutOnePair(text)) {
      let other: string | undefined;
      try {
        other = shape(parseRule(fewer));
      } catch {
        continue;
      }
      assert.notEqual(
        other,
        shape(rule),
        `${label}: ${text} has a needless pair`,
      );
    }
  }
}

Deno.test("print: minimal parentheses, Unicode and ASCII", () => {
  const cases: [string, string, string][] = [
    ["(a and b) or not c", "(a ∧ b) ∨ ¬c", "(a and b) or not c"],
    ["((a ∧ b) ∧ c)", "a ∧ b ∧ c", "a and b and c"],
    ["a ∧ (b ∧ c)", "a ∧ (b ∧ c)", "a and (b and c)"],
    ["a ⇒ (b ⇒ c)", "a ⇒ b ⇒ c", "a => b => c"],
    ["(a ⇒ b) ⇒ c", "(a ⇒ b) ⇒ c", "(a => b) => c"],
    ["(a ⇐ b) ⇐ c", "a ⇐ b ⇐ c", "a <= b <= c"],
    ["a ⇐ (b ⇐ c)", "a ⇐ (b ⇐ c)", "a <= (b <= c)"],
    ["(a ≡ b) ≢ c", "a ≡ b ≢ c", "a == b != c"],
    ["a ≡ (b ≢ c)", "a ≡ (b ≢ c)", "a == (b != c)"],
    ["(a ∧ b) ⇒ (c ∨ d)", "a ∧ b ⇒ c ∨ d", "a and b => c or d"],
    ["(a ⇒ b) ≡ (c ⇐ d)", "a ⇒ b ≡ c ⇐ d", "a => b == c <= d"],
    ["¬(a ∧ b)", "¬(a ∧ b)", "not (a and b)"],
    ["¬¬a", "¬¬a", "not not a"],
    ["¬true ∨ false", "¬true ∨ false", "not true or false"],
    [
      "(night ∧ down0) ∨ (day ∧ down1)",
      "(night ∧ down0) ∨ (day ∧ down1)",
      "(night and down0) or (day and down1)",
    ],
  ];
  for (const [source, unicode, ascii] of cases) {
    const rule = parseRule(source);
    assert.equal(printRule(rule), unicode, source);
    assert.equal(printRule(rule, { ascii: true }), ascii, source);
    assert.equal(printRule(rule, {}), unicode, source);
  }
});

Deno.test("round trip parse → print → parse over a list of rules", () => {
  const rules = [
    "true",
    "false",
    "sessions",
    "¬sessions",
    "sessions ∧ down0",
    "(night ∧ down0) ∨ (day ∧ down1)",
    "a ∧ (b ∨ c) ∧ d",
    "a ∨ (b ∧ c) ∨ d",
    "a ⇒ b ⇒ c ⇒ d",
    "((a ⇒ b) ⇒ c) ⇒ d",
    "a ⇐ b ⇐ c",
    "a ⇐ (b ⇐ c)",
    "a ⇒ (b ⇐ c)",
    "(a ⇐ b) ⇒ c",
    "a ≡ b ≡ c ≢ d",
    "a ≡ (b ≡ c)",
    "¬(a ≡ b) ∧ ¬¬c",
    "(a ≡ b) ∧ c",
    "(a ⇒ b) ∧ c",
    "a ∧ (b ⇒ c)",
    "a.b-c ∨ _d",
    "not (lan and office) => (proxy1 or iface0) == true",
  ];
  for (const source of rules) assertRoundTrip(parseRule(source), source);
});

/** mulberry32: a small seeded generator, so failures reproduce. */
function random(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const OPS: BinaryOp[] = ["and", "or", "implies", "follows", "equiv", "differs"];

function randomRule(next: () => number, depth: number): Rule {
  const r = next();
  if (depth === 0 || r < 0.2) {
    if (r < 0.03) return { kind: "const", value: next() < 0.5 };
    const name = ["a", "b", "c", "down0", "x_1"][Math.floor(next() * 5)];
    return { kind: "name", name, column: 0 };
  }
  if (r < 0.35) return { kind: "not", operand: randomRule(next, depth - 1) };
  return {
    kind: "binary",
    op: OPS[Math.floor(next() * OPS.length)],
    left: randomRule(next, depth - 1),
    right: randomRule(next, depth - 1),
  };
}

/** Full evaluation without short-circuit, as a reference for the value. */
function reference(rule: Rule, truth: Set<string>): boolean {
  switch (rule.kind) {
    case "const":
      return rule.value;
    case "name":
      return truth.has(rule.name);
    case "not":
      return !reference(rule.operand, truth);
    case "binary": {
      const a = reference(rule.left, truth);
      const b = reference(rule.right, truth);
      const table: Record<BinaryOp, boolean> = {
        and: a && b,
        or: a || b,
        implies: !a || b,
        follows: a || !b,
        equiv: a === b,
        differs: a !== b,
      };
      return table[rule.op];
    }
  }
}

Deno.test("round trip and evaluation over 500 random trees (seed 1300)", () => {
  const next = random(1300);
  for (let i = 0; i < 500; i++) {
    const rule = randomRule(next, 1 + (i % 6));
    assertRoundTrip(rule, `tree ${i}`);
    // Short-circuit changes which names are asked, never the value.
    const truth = new Set(
      ["a", "b", "c", "down0", "x_1"].filter(() => next() < 0.5),
    );
    const seen: string[] = [];
    const value = evaluate(rule, (name) => {
      seen.push(name);
      return truth.has(name);
    });
    assert.equal(
      value,
      reference(rule, truth),
      `tree ${i}: ${printRule(rule)}`,
    );
    // What was asked is a prefix-ordered subsequence of the names in the text.
    const all = ruleNames(parseRule(printRule(rule))).map((n) => n.name);
    let k = 0;
    for (const name of seen) {
      while (k < all.length && all[k] !== name) k++;
      assert.ok(k < all.length, `tree ${i}: ${name} asked out of order`);
      k++;
    }
  }
});

Deno.test("compileRule: the value and the names reached of evaluate, over 2000 random trees and long chains (seed 9110)", () => {
  const next = random(9110);
  const rules: Rule[] = [];
  for (let i = 0; i < 2000; i++) rules.push(randomRule(next, 1 + (i % 7)));
  // Chains of one operator become one loop: long ones, and mixed with
  // another operator inside, keep their order and short-circuit.
  for (
    const text of [
      "a ∧ b ∧ c ∧ down0 ∧ x_1 ∧ a ∧ b",
      "a ∨ b ∨ c ∨ down0 ∨ x_1",
      "(a ∨ b) ∧ (c ∨ down0) ∧ ¬x_1",
      "a ∧ (b ∧ (c ∧ down0))",
      "a ⇒ b ⇒ c",
      "a ⇐ b ⇐ c",
      "a ≡ b ≢ c ≡ down0",
      "true ∧ a",
      "false ∨ a",
    ]
  ) rules.push(parseRule(text));
  for (const [i, rule] of rules.entries()) {
    for (let t = 0; t < 4; t++) {
      const truth = new Set(
        ["a", "b", "c", "down0", "x_1"].filter(() => next() < 0.5),
      );
      const asked: string[] = [];
      const value = evaluate(rule, (name) => {
        asked.push(name);
        return truth.has(name);
      });
      const reached: string[] = [];
      const compiled = compileRule<Set<string>>(rule, (name) => (arg) => {
        reached.push(name);
        return arg.has(name);
      });
      const what = `rule ${i}: ${printRule(rule)} with ${[...truth]}`;
      assert.equal(compiled(truth), value, what);
      assert.deepEqual(reached, asked, what);
    }
  }
});
