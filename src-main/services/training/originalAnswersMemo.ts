// The original (pre-training) answers of a run depend on the loaded base model, the test prompts, the prompt style
// and max_new_tokens, never on the training parameters. A support_ratio sweep runs one loaded model with the same
// prompts at every ratio, so it hands each run one memo: the first run generates the answers, the later runs reuse
// those rows and write the same responses_original.json (docs/insights.md, "support_ratio sweep").
import type { ResponseRow } from '../../../src-shared/run/runTypes'

export class OriginalAnswersMemo {
  private key: string | null = null
  private rows: ResponseRow[] | null = null

  /**
   * The remembered answers when `inputs` (everything the generation read besides the model: prompts, style, max
   * new tokens) equal the ones they were made from, compared as JSON; null otherwise.
   */
  lookup(inputs: unknown): ResponseRow[] | null {
    return this.rows !== null && this.key === JSON.stringify(inputs) ? this.rows : null
  }

  remember(inputs: unknown, rows: ResponseRow[]): void {
    this.key = JSON.stringify(inputs)
    this.rows = rows
  }
}
