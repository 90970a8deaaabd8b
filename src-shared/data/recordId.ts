// A dataset or prompts row's id as the file gives it (docs/architecture.md#datasets-and-prompts): the renderer shows
// it, main reads it (services/data/promptsFile.ts).
export type RecordId = number | string
