// Open datasets kept in memory for paging: rows filtered by a search query, and the pairs the notebook's
// data_size / support_ratio rule produces, counted and paged for the dataset browser.
import { randomBytes } from 'node:crypto'
import { existsSync, statSync } from 'node:fs'
import { dirname, join } from 'node:path'
import type { DatasetOpened, DatasetRowsPage, PairsPage, PromptsOpened } from '../../src-shared/api/contract'
import {
  loadPreferenceData,
  preferencePairs,
  type PreferenceData,
  type PreferenceRow,
} from '../services/data/preferenceFile'
import { loadPromptsFile } from '../services/data/promptsFile'
import type { ChatMessage } from '../services/tokenizer/chatTemplate'
import { StudioError } from '../services/errors'

const KEEP = 4

export function promptString(p: string | ChatMessage[]): string {
  return typeof p === 'string' ? p : p.map((m) => `${m.role}: ${m.content}`).join('\n')
}

export async function openPrompts(path: string): Promise<PromptsOpened> {
  return { path, prompts: await loadPromptsFile(path) }
}

export class DatasetRegistry {
  private open = new Map<string, PreferenceData>()

  async openDataset(path: string): Promise<DatasetOpened> {
    const data = await loadPreferenceData(path)
    const datasetId = randomBytes(6).toString('hex')
    this.open.set(datasetId, data)
    while (this.open.size > KEEP) this.open.delete(this.open.keys().next().value!)
    const dir = existsSync(path) && statSync(path).isDirectory() ? path : dirname(path)
    const testFile = join(dir, 'test_prompt.json')
    const testPrompts = existsSync(testFile) ? await openPrompts(testFile) : null
    return {
      datasetId,
      file: data.file,
      format: data.format,
      conversational: data.conversational,
      rowCount: data.rows.length,
      testPrompts,
    }
  }

  get(datasetId: string): PreferenceData {
    const d = this.open.get(datasetId)
    if (!d) throw new StudioError('E_BAD_INPUT', 'that dataset is no longer open; open it again')
    return d
  }

  rows(datasetId: string, query: string, offset: number, limit: number): DatasetRowsPage {
    const data = this.get(datasetId)
    const q = query.trim().toLowerCase()
    const view = data.rows.map((r, i) => rowView(r, i + 1))
    const matched = q
      ? view.filter((r) => `${r.id}\n${r.prompt}\n${r.first}\n${r.second}`.toLowerCase().includes(q))
      : view
    return { total: view.length, matched: matched.length, offset, rows: matched.slice(offset, offset + limit) }
  }

  pairs(datasetId: string, dataSize: number, supportRatio: number, offset: number, limit: number): PairsPage {
    const pairs = preferencePairs(this.get(datasetId), { dataSize, supportRatio })
    const supportCount = pairs.filter((p) => p.position === 'support').length
    const opposeCount = pairs.filter((p) => p.position === 'oppose').length
    return {
      total: pairs.length,
      supportCount,
      opposeCount,
      offset,
      pairs: pairs.slice(offset, offset + limit).map((p, i) => ({
        index: offset + i + 1,
        id: p.id,
        prompt: promptString(p.prompt),
        chosen: p.chosen,
        rejected: p.rejected,
        position: p.position,
      })),
    }
  }
}

function rowView(r: PreferenceRow, index: number) {
  return {
    index,
    id: r.id,
    prompt: promptString(r.prompt),
    first: r.support ?? r.chosen ?? '',
    second: r.oppose ?? r.rejected ?? '',
  }
}
