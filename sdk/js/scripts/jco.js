// jco's API, made usable from Node.
//
// jco 1.35 runs wasm-tools as a component on @bytecodealliance/preview2-shim,
// and preview2-shim 0.26 starts with no preopened directory, so every API
// call that reads a WIT path fails with "failed to get path metadata ... (os
// error 44)" (the jco CLI too). Preopening "/" on the shim instance that
// jco-transpile itself resolves lets those calls read the files they are given.
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';

const require = createRequire(import.meta.url);
const transpileMain = require.resolve('@bytecodealliance/jco-transpile');
const shimFs = createRequire(transpileMain).resolve('@bytecodealliance/preview2-shim/filesystem');
const { _setPreopens } = await import(pathToFileURL(shimFs).href);
_setPreopens({ '/': '/' });

export { types, componentWit, transpile } from '@bytecodealliance/jco';
