import { InvalidArgumentError, Option, type Command } from 'commander';
import { mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { isDnsLabel } from '../config/index.js';
import { ErrorCodes, isMeshError } from '../errors.js';
import type { ImportPlan, Placement, PortOverride } from '../compose/index.js';
import { UsageError, type CliContext } from './context.js';
import { formatList, formatTable, sanitize } from './output.js';

/**
 * `compose import FILE --place svc=node …`: the mesh part of each node's configuration from a
 * Compose file, as NixOS snippets or agent JSON. The snippets go to stdout (or --out DIR); the
 * summary and every warning go to stderr, so stdout can be piped. Works offline: no agent needed.
 */

type Format = 'nix' | 'json' | 'both';

interface ComposeImportFlags {
  place?: Placement[];
  port?: PortOverride[];
  profile?: string[];
  format: Format;
  out?: string;
}

/** A Compose file larger than this is refused before reading (it is configuration, not data). */
const MAX_COMPOSE_BYTES = 4 * 1024 * 1024;
const MAX_ENV_FILE_BYTES = 1024 * 1024;
const SERVICE_NAME = /^[a-zA-Z0-9._-]+$/;

function collectPlacement(value: string, previous: Placement[] | undefined): Placement[] {
  const m = /^([^=]+)=([^=]+)$/.exec(value);
  if (!m || !SERVICE_NAME.test(m[1]!) || !isDnsLabel(m[2]!)) {
    throw new InvalidArgumentError('expected SERVICE=NODE with NODE a DNS label (1-63 of a-z, 0-9 and -), e.g. db=node2.');
  }
  return [...(previous ?? []), { service: m[1]!, node: m[2]! }];
}

function collectPort(value: string, previous: PortOverride[] | undefined): PortOverride[] {
  const m = /^([^=]+)=(\d{1,5})$/.exec(value);
  const port = m ? Number(m[2]) : NaN;
  if (!m || !SERVICE_NAME.test(m[1]!) || port < 1 || port > 65535) throw new InvalidArgumentError('expected SERVICE=PORT with a port 1..65535, e.g. web=8080.');
  return [...(previous ?? []), { service: m[1]!, port }];
}

function collectString(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
}

export function registerComposeCommand(program: Command, ctx: CliContext): void {
  const compose = program.command('compose').description('translate a Compose file into mesh configuration (offline)');
  compose
    .command('import')
    .description('write each node\'s mesh configuration (services, tags, allowFrom) for the services placed on it')
    .argument('<file>', 'the Compose file, e.g. docker-compose.yml')
    .option('--place <service=node>', 'run SERVICE on NODE (repeatable; a service may go to several nodes)', collectPlacement)
    .option('--port <service=port>', 'the port of SERVICE, replacing what the file says (repeatable)', collectPort)
    .option('--profile <name>', 'include the services of this Compose profile (repeatable)', collectString)
    .addOption(new Option('--format <format>', 'nix: NixOS services.osmoda-mesh snippets; json: agent config; both (needs --out)').choices(['nix', 'json', 'both']).default('nix'))
    .option('--out <dir>', 'write DIR/<node>.nix and/or DIR/<node>.json instead of printing')
    .action(async (file: string, flags: ComposeImportFlags) => {
      if (flags.format === 'both' && flags.out === undefined) throw new UsageError('compose import: --format both writes two files per node: give --out DIR');
      if ((flags.place ?? []).length === 0) {
        throw new UsageError(`compose import: no --place given: say where each service runs, e.g. --place web=node1 --place db=node2`);
      }
      // Loaded here, not at start-up: the YAML parser is for this verb only (client verbs start faster).
      const { parseCompose, renderJson, renderNix, translateCompose } = await import('../compose/index.js');
      let plan: ImportPlan;
      try {
        const model = parseCompose(readComposeFile(file), file);
        const baseDir = dirname(resolve(file));
        plan = translateCompose(model, {
          placements: flags.place ?? [],
          ports: flags.port ?? [],
          profiles: flags.profile ?? [],
          readEnvFile: (path) => readEnvFile(resolve(baseDir, path)),
        });
      } catch (err) {
        // A broken file or an argument that does not match it is a usage error (exit 2).
        if (isMeshError(err, ErrorCodes.COMPOSE_INVALID) || isMeshError(err, ErrorCodes.INVALID_ARGUMENT)) throw new UsageError(err.message);
        throw err;
      }
      ctx.stderr.write(formatSummary(plan));
      if (plan.nodes.length === 0) {
        ctx.stderr.write('nothing to write: no placed service was imported\n');
        return;
      }
      if (flags.out !== undefined) {
        mkdirSync(flags.out, { recursive: true });
        for (const node of plan.nodes) {
          if (flags.format !== 'json') writeOut(ctx, join(flags.out, `${node.node}.nix`), renderNix(node, file));
          if (flags.format !== 'nix') writeOut(ctx, join(flags.out, `${node.node}.json`), JSON.stringify(renderJson(node), null, 2) + '\n');
        }
        return;
      }
      if (flags.format === 'json') {
        // One JSON document keyed by node, so that `| jq .node1 > node1.json` works.
        ctx.stdout.write(JSON.stringify(Object.fromEntries(plan.nodes.map((n) => [n.node, renderJson(n)])), null, 2) + '\n');
        return;
      }
      ctx.stdout.write(plan.nodes.map((n) => `# ---- ${n.node}.nix ----\n${renderNix(n, file)}`).join('\n'));
    });
}

function readComposeFile(file: string): string {
  try {
    const size = statSync(file).size;
    if (size > MAX_COMPOSE_BYTES) throw new UsageError(`compose import: '${file}' is ${size} bytes: a Compose file of at most ${MAX_COMPOSE_BYTES} is expected`);
    return readFileSync(file, 'utf8');
  } catch (err) {
    if (err instanceof UsageError) throw err;
    const code = (err as NodeJS.ErrnoException).code;
    throw new UsageError(`compose import: cannot read '${file}': ${code === 'ENOENT' ? 'no such file' : (err as Error).message}`);
  }
}

/** null when the file does not exist (the summary says so); other read errors too, rather than failing the import. */
function readEnvFile(path: string): string | null {
  try {
    if (statSync(path).size > MAX_ENV_FILE_BYTES) return null;
    return readFileSync(path, 'utf8');
  } catch {
    return null;
  }
}

function writeOut(ctx: CliContext, path: string, text: string): void {
  writeFileSync(path, text);
  ctx.stderr.write(sanitize(`wrote ${path}`) + '\n');
}

/** The summary on stderr: one row per service, the nodes, references, notes, then warnings. */
export function formatSummary(plan: ImportPlan): string {
  const placed = plan.services.filter((s) => s.nodes.length > 0).length;
  let out = `compose import ${plan.file}: ${plan.services.length} service(s), ${placed} placed on ${plan.nodes.length} node(s)\n\n`;
  const rows = plan.services.map((s) => [
    s.service,
    formatList(s.nodes),
    formatList(s.names),
    formatList(s.ports.map(String)),
    formatList(s.allowFrom),
    s.notes.join('; ') || '-',
  ]);
  out += formatTable(['SERVICE', 'NODE', 'MESH NAMES', 'PORT', 'ALLOW FROM', 'NOTES'], rows);
  if (plan.nodes.length > 0) {
    out += '\n' + formatTable(
      ['NODE', 'TAGS', 'MESH SERVICES', 'COMPOSE SERVICES'],
      plan.nodes.map((n) => [n.node, formatList(n.tags), formatList(n.services.map((s) => `${s.name}:${s.port}`)), formatList(n.composeServices)]),
    );
  }
  if (plan.references.length > 0) {
    out += '\nreferences found in environment and env_file:\n';
    for (const r of plan.references) out += sanitize(`  ${r.from} → ${r.to} (from ${r.origin})${r.problem === null ? '' : ': ' + r.problem}`) + '\n';
  }
  if (plan.notes.length > 0) {
    out += '\nnotes:\n';
    for (const note of plan.notes) out += sanitize(`  - ${note}`) + '\n';
  }
  if (plan.warnings.length > 0) {
    out += `\n${plan.warnings.length} warning(s): what does not translate\n`;
    for (const warning of plan.warnings) out += sanitize(`warning: ${warning}`) + '\n';
  }
  return out;
}
