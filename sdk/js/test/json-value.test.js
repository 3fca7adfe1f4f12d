// The payload comparison of the harness, beyond the shared cases: the corners
// of serde_json's `Value` that JSON.parse does not keep.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DirectiveError } from '../src/index.js';
import { parseJsonValue, sameJsonValue } from '../src/json-value.js';
import { Recorder } from '../src/testing.js';

/** The recorder's answer to `second` under the key `first` holds. */
function answer(first, second) {
  const recorder = new Recorder('h');
  assert.equal(recorder.request({ name: 'x', payload: first, idempotencyKey: 'k' }).status, 'accepted');
  try {
    return recorder.request({ name: 'x', payload: second, idempotencyKey: 'k' }).status;
  } catch (error) {
    if (error instanceof DirectiveError) return error.kind;
    throw error;
  }
}

test('integers compare exactly, beyond 2^53 too, and never equal a float', () => {
  const cases = [
    ['9007199254740993', '9007199254740992', 'conflict'],
    ['9007199254740993', '9007199254740993', 'duplicate'],
    ['18446744073709551615', '18446744073709551615', 'duplicate'], // u64::MAX
    ['18446744073709551615', '18446744073709551615.0', 'conflict'],
    ['18446744073709551616', '18446744073709551616.0', 'duplicate'], // above u64: a float
    ['-9223372036854775808', '-9223372036854775808.0', 'conflict'], // i64::MIN
    ['-9223372036854775809', '-9223372036854775809.0', 'duplicate'], // below i64: a float
    ['-1', '-1.0', 'conflict'],
    ['-0', '0', 'conflict'], // serde_json reads -0 as the float -0.0
    ['-0', '0.0', 'duplicate'],
    ['-0.0', '0.0', 'duplicate'],
    ['1E2', '1e+2', 'duplicate'],
    ['0.1', '1e-1', 'duplicate'],
    ['0.5', '0.50000', 'duplicate'],
  ];
  for (const [a, b, expected] of cases) {
    assert.equal(answer(`{"n":${a}}`, `{"n":${b}}`), expected, `${a} then ${b}`);
    assert.equal(answer(`[${b}]`, `[${a}]`), expected, `${b} then ${a}`);
  }
});

test('objects compare by key in any order, a repeated key keeps its last value; arrays in order', () => {
  const spaced = '{ "d" : "e" , "a" : { "b" : [ 1 , { "c" : null } ] } }';
  assert.equal(answer('{"a":{"b":[1,{"c":null}]},"d":"e"}', spaced), 'duplicate');
  assert.equal(answer('{"a":1}', '{"a":2,"a":1}'), 'duplicate');
  assert.equal(answer('{"a":1}', '{"a":1,"a":2}'), 'conflict');
  assert.equal(answer('{"a":1}', '{"a":1,"b":1}'), 'conflict');
  assert.equal(answer('{"a":[1,2]}', '{"a":[2,1]}'), 'conflict');
  assert.equal(answer('{"a":[1]}', '{"a":[1,2]}'), 'conflict');
  assert.equal(answer('{"a":[1,2]}', '{"a":[1]}'), 'conflict');
  assert.equal(answer('{"a":[]}', '{"a":{}}'), 'conflict');
  assert.equal(answer('{"a":"\\u00e9"}', '{"a":"é"}'), 'duplicate');
});

test('what serde_json refuses is an invalid payload', () => {
  const deep = (n) => '['.repeat(n) + ']'.repeat(n);
  for (const payload of [
    '{"n":1e400}',
    '{"n":-1e400}',
    `{"n":1${'0'.repeat(400)}}`,
    '{"s":"\\ud800"}',
    '{"s":"\\udc00x"}',
    '{"s":"\\ud800\\u0041"}',
    '{"s":"\ud800"}',
    deep(128),
  ]) {
    assert.throws(
      () => new Recorder('h').request({ name: 'x', payload, idempotencyKey: 'k' }),
      (e) => e instanceof DirectiveError && e.kind === 'invalid' && /^payload is not JSON/.test(e.reason),
      payload.slice(0, 40),
    );
  }
  for (const payload of [deep(127), '{"n":1e-400}', '{"s":"\\ud83d\\ude00"}', '{"s":"😀"}']) {
    assert.equal(new Recorder('h').request({ name: 'x', payload, idempotencyKey: 'k' }).status, 'accepted');
  }
});

test('the parser accepts what JSON.parse accepts, and refuses the rest', () => {
  const texts = [
    '0', '-0', '1.5e-3', '0e0', '"a\\"b\\\\c\\/\\b\\f\\n\\r\\t"', ' \t\n\r[ ] ', 'true', 'false', 'null', '{}',
    '[1,[2,[3]]]', '{"":0}',
    '', ' ', '01', '-', '1.', '.5', '+1', '1e', '0x10', 'NaN', 'Infinity', '[1,]', '{"a":1,}', '[1 2]',
    '{"a" 1}', '{a:1}', "'a'", '"\u0001"', '"\\x41"', '"\\u00g0"', 'tru', 'nul', '[', '{', '"', '1 1',
    '[]]', '{"a":1}}', '\u00a0 1',
  ];
  for (const text of texts) {
    let expected = true;
    try {
      JSON.parse(text);
    } catch {
      expected = false;
    }
    let actual = true;
    try {
      parseJsonValue(text);
    } catch (error) {
      assert.ok(error instanceof SyntaxError, JSON.stringify(text));
      actual = false;
    }
    assert.equal(actual, expected, JSON.stringify(text));
  }
});

test('sameJsonValue: the kinds of value', () => {
  const same = (a, b) => sameJsonValue(parseJsonValue(a), parseJsonValue(b));
  assert.ok(same('[null,true,false,"x",1,1.5]', '[null, true, false, "x", 1, 15e-1]'));
  const different = [['null', 'false'], ['0', 'false'], ['1', 'true'], ['"1"', '1'], ['[]', 'null'], ['{}', '[]']];
  for (const [a, b] of different) {
    assert.ok(!same(a, b), `${a} ${b}`);
  }
});
