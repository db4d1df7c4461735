// Preloaded into the jsii kernel's node (NODE_OPTIONS=--require): the AWS provider's
// lib/index.js requires all ~2,100 resource modules (247 MB of JS) when the assembly loads;
// rewritten here so that each namespace is required on first access. Same objects, same output.
"use strict";
const Module = require("module");
const INDEX = /[\\/]provider-aws[\\/](?:[^\\/]+[\\/]){0,2}lib[\\/]index\.js$/;
const EXPORT = /^exports\.(\w+) = require\("(\.\/[^"]+)"\);$/gm;
const compile = Module.prototype._compile;
Module.prototype._compile = function (content, filename) {
  if (INDEX.test(filename)) {
    content = content.replace(
      EXPORT,
      (_, name, target) =>
        `Object.defineProperty(exports, ${JSON.stringify(name)}, {enumerable: true, configurable: true, ` +
        `get() { const m = require(${JSON.stringify(target)}); ` +
        `Object.defineProperty(exports, ${JSON.stringify(name)}, {value: m, enumerable: true}); return m; }});`
    );
  }
  return compile.call(this, content, filename);
};
