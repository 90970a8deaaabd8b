# HF tokenizers / transformers / TRL side of the tokenization checks (docs/reference-parity.md, "Tokenization"):
# per tokenizer, the chat-templated prompt text and ids (apply_chat_template, with the entry's template variables
# such as enable_thinking), the date strftime_now printed, plain encodes with and without special
# tokens, the answers' ids, and the current TRL's DPO pair tokenization (DPOTrainer._prepare_dataset, then its
# collator) of the notebook's rows (prompt = the templated text, as the notebook passes it).
import datetime
import types

from refio import main


def render(tok, system, q, tokenize, kwargs):
    msgs = [{'role': 'system', 'content': system}, {'role': 'user', 'content': q}]
    try:
        return tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=tokenize, return_dict=False, **kwargs)
    except Exception:  # templates without a system role: the system text goes before the question (as ours)
        msgs = [{'role': 'user', 'content': f'{system}\n\n{q}'}]
        return tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=tokenize, return_dict=False, **kwargs)


def trl_pairs(tok, rows):
    import torch
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer
    from trl.trainer.dpo_trainer import DataCollatorForPreference
    args = DPOConfig(output_dir='/tmp/unused', report_to=[], dataset_num_proc=None, use_cpu=True, bf16=False)
    # _prepare_dataset only reads the tokenizer from the trainer; calling it unbound runs TRL's own code on the rows.
    fake = types.SimpleNamespace(_tokenizer=tok)
    ds = DPOTrainer._prepare_dataset(fake, Dataset.from_list(rows), tok, args, 'train')
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    collate = DataCollatorForPreference(pad_token_id=pad, max_length=args.max_length, truncation_mode=args.truncation_mode)
    out = []
    for ex in ds:
        b = collate([{k: ex[k] for k in ('prompt_ids', 'chosen_ids', 'rejected_ids')}])
        n = [len(ex['prompt_ids']) + len(ex['chosen_ids']), len(ex['prompt_ids']) + len(ex['rejected_ids'])]
        out.append({'promptIds': ex['prompt_ids'], 'chosenIds': ex['chosen_ids'], 'rejectedIds': ex['rejected_ids'],
                    'inputIds': [b['input_ids'][i, :n[i]].tolist() for i in range(2)],
                    'attentionMask': [b['attention_mask'][i, :n[i]].tolist() for i in range(2)],
                    'completionMask': [b['completion_mask'][i, :n[i]].tolist() for i in range(2)]})
    return out


def tokenize(data):
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer, PreTrainedTokenizerFast
    res = []
    for t in data['tokenizers']:
        tok = AutoTokenizer.from_pretrained(t['dir'])
        # The tokenizers library on tokenizer.json as it is (what transformers 4.x's fast tokenizers ran, and what
        # the HW6 stack ran); transformers 5 rebuilds some tokenizers' pipelines (docs/reference-parity.md).
        raw = Tokenizer.from_file(f"{t['dir']}/tokenizer.json")
        raw_tok = PreTrainedTokenizerFast(tokenizer_object=raw, bos_token=tok.bos_token, eos_token=tok.eos_token,
                                          unk_token=tok.unk_token, pad_token=tok.pad_token)
        has_template = tok.chat_template is not None
        kw = t.get('templateKwargs') or {}
        # The day strftime_now renders (templates that print today's date, e.g. Llama 3.2's): ours renders the same.
        today = datetime.date.today().isoformat()
        texts = [render(tok, data['system'], q, False, kw) if has_template else (tok.bos_token or '') + q for q in data['questions']]
        res.append({
            'name': t['name'],
            'today': today,
            'texts': texts,
            'templateIds': [list(render(tok, data['system'], q, True, kw)) if has_template else None for q in data['questions']],
            'plainIds': [tok(x, add_special_tokens=False)['input_ids'] for x in texts],
            'specialIds': [tok(x)['input_ids'] for x in texts],
            'answerIds': [tok(a, add_special_tokens=False)['input_ids'] for a in data['answers']],
            'rawPlainIds': [raw.encode(x, add_special_tokens=False).ids for x in texts],
            'rawSpecialIds': [raw.encode(x).ids for x in texts],
            'rawAnswerIds': [raw.encode(a, add_special_tokens=False).ids for a in data['answers']],
            'trl': trl_pairs(raw_tok, [{'prompt': texts[i], 'chosen': r['chosen'], 'rejected': r['rejected']} for i, r in enumerate(data['rows'])]),
        })
    return res


main(tokenize)
