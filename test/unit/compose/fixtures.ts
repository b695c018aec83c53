import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseCompose, translateCompose, type ComposeModel, type ImportPlan, type TranslateOptions } from '../../../src/compose/index.js';

/** The Compose files under test/fixtures/compose, read and translated the way the CLI does. */
export const FIXTURES = fileURLToPath(new URL('../../fixtures/compose/', import.meta.url));

export function fixturePath(name: string): string {
  return join(FIXTURES, name);
}

export function fixtureText(name: string): string {
  return readFileSync(fixturePath(name), 'utf8');
}

/** Parsed with the bare name as the file, so messages read "ports.yml:12: …". */
export function parseFixture(name: string): ComposeModel {
  return parseCompose(fixtureText(name), name);
}

/** env_file paths resolved next to the fixtures, as the CLI resolves them next to the Compose file. */
export function readFixtureEnvFile(path: string): string | null {
  const full = join(FIXTURES, path);
  return existsSync(full) ? readFileSync(full, 'utf8') : null;
}

export function translateFixture(name: string, placements: Record<string, string | string[]>, options: Partial<TranslateOptions> = {}): ImportPlan {
  const list = Object.entries(placements).flatMap(([service, nodes]) => (Array.isArray(nodes) ? nodes : [nodes]).map((node) => ({ service, node })));
  return translateCompose(parseFixture(name), { readEnvFile: readFixtureEnvFile, ...options, placements: list });
}

/** The warnings with a given file line, for assertions that must point at the right line. */
export function warningsAt(plan: ImportPlan, line: number): string[] {
  return plan.warnings.filter((w) => w.startsWith(`${plan.file}:${line}: `));
}
