/**
 * The one place an e2e suite decides whether it can run. Without its prerequisites a suite is
 * skipped, says so on stderr in one loud line (skipped is never reported as passed), and under
 * CI=true it registers a failing test instead, so a broken CI image cannot go green by skipping.
 */
import { it } from 'vitest';
import { ErrorCodes, MeshError } from '../../../src/errors.js';
import { e2eAvailability } from './netns.js';
import type { E2eAvailability } from './netns.js';

export function e2eGate(suite: string): E2eAvailability {
  const availability = e2eAvailability();
  if (!availability.ok) {
    const isCi = process.env.CI === 'true';
    console.error(
      `!!!!! E2E SUITE '${suite}' DID NOT RUN: ${availability.reason}` +
        (isCi ? ' — failing because CI=true' : ' — its tests are skipped, not passed'),
    );
    if (isCi) {
      it(`e2e prerequisites are present (CI=true): ${suite}`, () => {
        throw new MeshError(ErrorCodes.INTERNAL, `e2e suite '${suite}': ${availability.reason}`);
      });
    }
  }
  return availability;
}
