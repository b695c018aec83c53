import { cryptoPrimitives } from './crypto-primitives.js';
import { machine, markdownTable, saveJson } from './harness.js';
import { protocolCosts } from './protocol.js';

/**
 * `npm run bench [-- --quick]`: in-process benchmarks (crypto primitives, handshake rate, frame
 * codec, message path). Prints a Markdown table and saves JSON to bench/results/.
 */
const isQuick = process.argv.includes('--quick');
const opts = isQuick ? { ms: 200, repeats: 1 } : { ms: 700, repeats: 3 };
const info = machine();
process.stdout.write(`osmoda-mesh benchmarks — ${info['date']} — ${info['cpu']} × ${info['cores']}, node ${info['node']}${isQuick ? ' (quick)' : ''}\n\n`);
const crypto = cryptoPrimitives(opts);
process.stdout.write('## Crypto primitives (ratio to node:crypto in the same run)\n\n' + markdownTable(crypto) + '\n\n');
const protocol = protocolCosts(opts);
process.stdout.write('## Protocol costs in process\n\n' + markdownTable(protocol) + '\n');
saveJson(new URL('../../bench/results/in-process.json', import.meta.url).pathname, { machine: info, quick: isQuick, crypto, protocol });
process.stdout.write('\nsaved bench/results/in-process.json\n');
