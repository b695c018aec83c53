// Compiles native/malloc-trim.c into dist/native/malloc-trim.node with the system C compiler
// (`cc`, or $CC) against the Node-API headers from the node-api-headers package: no node-gyp, no
// download. Part of `npm run build`. Without a compiler, or on a libc without malloc_trim (musl),
// it says so and the build goes on: the agent then runs without the helper and logs that once.
import { execFileSync } from 'node:child_process';
import { mkdirSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const out = join(root, 'dist', 'native', 'malloc-trim.node');
const compiler = process.env.CC || 'cc';

try {
  const { include_dir: includeDir } = createRequire(import.meta.url)('node-api-headers');
  mkdirSync(dirname(out), { recursive: true });
  rmSync(out, { force: true });
  execFileSync(compiler, ['-O2', '-Wall', '-Werror', '-shared', '-fPIC', '-I', includeDir, '-o', out, join(root, 'native', 'malloc-trim.c')], { stdio: ['ignore', 'inherit', 'inherit'] });
} catch (err) {
  console.warn(`native: malloc-trim helper not built (${err.message.split('\n')[0]}); the agent will run without it (idle memory stays higher after load)`);
}
