/**
 * `npm run build`, second step: tsc has compiled src/ to dist/src/ (one file per module); this
 * bundles the entry point, dist/src/main.js, with every module and JavaScript dependency it
 * reaches into that same file, which is what `osmoda-mesh` (package.json "bin") and the NixOS unit
 * run. The other files in dist/ stay for the benchmarks and tests that import single modules.
 *
 * Why: memory. A fresh agent loaded as 271 ES and CommonJS modules (102 of ours) held 62.8-66.1 MB
 * (four starts); bundled, 59.2-59.3 (three starts), and `osmoda-mesh --version` took 0.23 instead of
 * 0.31 s. What goes is the per-module cost: module records, CommonJS wrappers, the resolver's
 * package.json cache and the comments tsc keeps in every module's source, which V8 holds as a
 * string for as long as the process lives (README, Benchmarks, "Where the idle memory goes").
 *
 * Not minified, so that a stack trace's line points at readable code; only comments are dropped
 * (legal notices are kept). The native addons stay outside: they are loaded with require() from
 * node_modules, as before. rolldown is the bundler vitest's vite already brings (the same version,
 * so the lockfile gains no package).
 */
export default {
  input: 'dist/src/main.js',
  platform: 'node',
  external: ['sodium-native', 'bufferutil', 'utf-8-validate'],
  output: {
    file: 'dist/src/main.js',
    format: 'esm',
    minify: false,
    comments: { legal: true, annotation: false, jsdoc: false },
    // Non-ASCII characters as escapes: V8 keeps the source of the whole file as one string, one
    // byte per character when every character is Latin-1, two bytes otherwise. 23 characters
    // (an ellipsis in messages, arrows in a dependency, a BOM in a regex) made the 1.1 MB bundle
    // 2.2 MB of heap for the life of the process.
    charset: 'ascii',
    // one file: the daemon's dynamic import (main.ts) is inlined, and rolldown wraps its modules in
    // lazy init functions, so a client verb still does not run the daemon's module code
    codeSplitting: false,
  },
};
