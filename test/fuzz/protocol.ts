// What the fuzz supervisor (runJsTarget.ts) and its worker (worker.ts) exchange, and how findings are told apart.

/** Shared memory: Int32 [state (1 while an input runs), input length, execs], Float64 start time, then the input. */
export const SAB_DATA_OFFSET = 32

export interface WorkerInit {
  target: string
  /** Wall-clock end (Date.now() milliseconds). */
  deadline: number
  seed: number
  /** The starting corpus: committed seeds and regressions, generated seeds, earlier finds. */
  inputs: Uint8Array[]
  /** A private folder for the files the target writes. */
  scratch: string
  sab: SharedArrayBuffer
  maxLength: number
  /** Signatures already reported in this run (not reported again). */
  knownSignatures: string[]
}

export type WorkerMessage =
  | { type: 'corpus'; input: Uint8Array }
  | { type: 'finding'; kind: FindingKind; signature: string; message: string; input: Uint8Array }
  | { type: 'stats'; execs: number; features: number; corpus: number }
  | { type: 'done' }

export type FindingKind = 'crash' | 'timeout' | 'oom'

/**
 * The kind of failure a message describes, so that one bug found through many inputs is reported once: the part
 * before the first ': ' (the broken property, or 'uncaught TypeError at fn (file)'), with the scratch folder,
 * numbers and quoted text blanked out.
 */
export function findingSignature(message: string, scratch: string): string {
  return message
    .split(scratch)
    .join('<dir>')
    .split(': ')[0]!
    .replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'/g, 'Q')
    .replace(/\d+/g, 'N')
    .slice(0, 200)
}
