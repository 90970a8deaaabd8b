// What a TypeScript fuzz target is (docs/fuzzing.md): a reader of one kind of user file, the seeds and words that
// steer mutations towards what it reads, and one run that checks the property of property.ts on one input.

/** How the runner mutates inputs besides flipping bytes: as one JSON document, as JSON-array-or-JSONL records, or
 * as a safetensors file (8-byte length, JSON header, data). */
export type InputKind = 'json' | 'json-records' | 'safetensors'

export interface JsFuzzTarget {
  name: string
  /** The file the input bytes become, in words (for the docs and the table). */
  file: string
  kind: InputKind
  /** Seeds made at run time: from the real files in ../shared (never committed; missing files give none) and from
   * the target's own fixtures. Committed seeds and regressions are added by the runner. */
  seeds(shared: string): Uint8Array[]
  /** Field names and values this reader looks for: keys and string values for the mutator. */
  dictionary: readonly string[]
  /** Whole JSON values (rows, messages, settings) the mutator splices in. */
  fragments: readonly unknown[]
  /** Prepares `dir` (a private scratch folder) once: the fixed files around the fuzzed one. */
  prepare(dir: string): void
  /** One input. Resolves when the property holds; throws PropertyViolation (or lets anything else escape). */
  run(input: Uint8Array, dir: string): Promise<void>
}

export const text = (s: string): Uint8Array => new TextEncoder().encode(s)
