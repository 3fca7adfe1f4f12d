// JSON text read the way the host reads a directive payload (serde_json's
// `Value`), so the harness tells duplicates from conflicts exactly as the host
// does. `JSON.parse` cannot: it makes `1` and `1.0` the same Number, and an
// integer above 2^53 the same Number as its neighbours.
//
// What serde_json keeps, and so what this keeps:
// - a number is an integer if its text has no fraction and no exponent and it
//   fits u64 (non-negative) or i64 (negative); any other number is a float.
//   An integer never equals a float: `1` is not `1.0`. Integers compare
//   exactly; floats as f64, so `1.0`, `1.00` and `10e-1` are equal, and so are
//   `1e2` and `100.0`. `-0` is the float -0.0, equal to `0.0`, not to `0`.
// - a float that overflows f64 (`1e400`) is not JSON to serde_json;
// - an escaped lone surrogate (`"\ud800"`) is not JSON to serde_json;
// - arrays or objects nested 128 deep are not JSON to serde_json;
// - object keys compare in any order; a repeated key keeps its last value.
// Whitespace between tokens never matters.

/** serde_json refuses to enter the 128th nested array or object. */
const MAX_DEPTH = 127;
const U64_MAX = (1n << 64n) - 1n;
const I64_MIN = -(1n << 63n);

/** A JSON number: `integer` (value a BigInt) or `float` (value a Number). */
export class JsonNumber {
  constructor(kind, value) {
    this.kind = kind;
    this.value = value;
  }
}

const NUMBER = /-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?/y;
const STRING = /"(?:[^"\\\u0000-\u001f]|\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4}))*"/y;
const WHITESPACE = /[ \t\n\r]*/y;

function number(text) {
  const [, fraction, exponent] = /^-?[0-9]+(\.[0-9]+)?([eE].*)?$/.exec(text);
  if (fraction === undefined && exponent === undefined) {
    const integer = BigInt(text);
    if (integer >= I64_MIN && integer <= U64_MAX && text !== '-0') return new JsonNumber('integer', integer);
  }
  const float = Number(text);
  if (!Number.isFinite(float)) throw new SyntaxError(`number out of range: ${text}`);
  return new JsonNumber('float', float);
}

/**
 * Parses JSON text into null, booleans, strings, JsonNumbers, arrays and Maps
 * (objects). Throws a SyntaxError for text serde_json would refuse.
 */
export function parseJsonValue(text) {
  let at = 0;
  const fail = (what) => {
    throw new SyntaxError(`${what} at position ${at}`);
  };
  const skip = () => {
    WHITESPACE.lastIndex = at;
    WHITESPACE.exec(text);
    at = WHITESPACE.lastIndex;
  };
  const token = (pattern) => {
    pattern.lastIndex = at;
    const match = pattern.exec(text);
    if (match === null) return undefined;
    at = pattern.lastIndex;
    return match[0];
  };
  const string = () => {
    const literal = token(STRING);
    if (literal === undefined) fail('expected a string');
    const value = JSON.parse(literal);
    if (!value.isWellFormed()) fail('lone surrogate in a string');
    return value;
  };
  const value = (depth) => {
    skip();
    const c = text[at];
    if (c === '{' || c === '[') {
      if (depth >= MAX_DEPTH) fail('nested too deep');
      at++;
      skip();
      const close = c === '{' ? '}' : ']';
      const container = c === '{' ? new Map() : [];
      if (text[at] === close) {
        at++;
        return container;
      }
      for (;;) {
        if (c === '{') {
          skip();
          const key = string();
          skip();
          if (text[at++] !== ':') fail('expected a colon');
          container.set(key, value(depth + 1));
        } else {
          container.push(value(depth + 1));
        }
        skip();
        const next = text[at++];
        if (next === close) return container;
        if (next !== ',') fail(`expected a comma or ${close}`);
      }
    }
    if (c === '"') return string();
    for (const [literal, result] of [['true', true], ['false', false], ['null', null]]) {
      if (text.startsWith(literal, at)) {
        at += literal.length;
        return result;
      }
    }
    const numeral = token(NUMBER);
    if (numeral === undefined) fail('expected a value');
    return number(numeral);
  };
  const result = value(0);
  skip();
  if (at !== text.length) fail('trailing characters');
  return result;
}

/** Whether two parsed values are equal as serde_json `Value`s. */
export function sameJsonValue(a, b) {
  if (a instanceof JsonNumber) {
    return b instanceof JsonNumber && a.kind === b.kind && a.value === b.value;
  }
  if (Array.isArray(a)) {
    return Array.isArray(b) && a.length === b.length && a.every((item, i) => sameJsonValue(item, b[i]));
  }
  if (a instanceof Map) {
    if (!(b instanceof Map) || a.size !== b.size) return false;
    for (const [key, item] of a) {
      if (!b.has(key) || !sameJsonValue(item, b.get(key))) return false;
    }
    return true;
  }
  return a === b;
}
