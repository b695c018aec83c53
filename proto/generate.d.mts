/** Types of proto/generate.mjs for the tests that import it (test/unit/wire/proto-codec.test.ts). */
export function generateSchema(protoText: string): string;
