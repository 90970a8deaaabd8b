// A reactive word-level diff of two texts (lib/wordDiff.ts), recomputed when either changes.
import { computed, type Ref } from 'vue'
import { wordDiff } from '../lib/wordDiff'

export function useWordDiff(before: Ref<string>, after: Ref<string>) {
  return computed(() => wordDiff(before.value, after.value))
}
