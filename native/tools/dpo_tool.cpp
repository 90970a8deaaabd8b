// dpo-tool: the engine without Node, for GPU machines and benchmarks. One file per command (cmd_*.cpp).
//   dpo-tool info
//   dpo-tool generate --model DIR --ids 1,2,3 [--quant nf4|none] [--backend auto|cpu|cuda] [--max-new N]
//   dpo-tool make-model --out DIR [--arch llama|mistral] [--shards N] [--hidden C --layers L --heads NH
//                       --kv-heads NKV --ffn F --vocab V] [--seed S] [--threads N]
//            random bf16 safetensors; --arch mistral defaults to the Breeze-7B-Instruct shape
//   dpo-tool make-model --out DIR --family NAME [--bnb-4bit] [--bnb-skip P1,P2] [--float32] [--seed S]
//                       [--tokenizers ../shared/tokenizers] [--config '{"key": value}']
//            the tiny twin of a tested family (llama-3.2-1b-instruct, llama-3.1-8b-instruct, qwen2.5-0.5b-instruct,
//            qwen3-0.6b, mistral-7b-instruct-v0.3, breeze-7b-instruct-v1_0): real config, shrunk sizes
//   dpo-tool bench --model DIR [--quant nf4|none] [--prompt-len T] [--new N] [--batch B] [--json FILE]
//   dpo-tool bench-hw6 --model DIR --workload FILE [--backend auto|cpu|cuda] [--pairs N] [--prompts N] [--new 200]
//                      [--warm-cache 1|0] [--json FILE]
//            the HW6 workload (scripts/bench/makeWorkload.ts): load, reference log-probs, DPO training, generation
//   dpo-tool self-check [--candidate cuda|cpu|cpu-guarded|cpu:corrupt=KERNEL] [--repeat N]
//            the GPU self-check against the CPU backend, with its cost (docs/cuda-self-check.md)
//   dpo-tool nf4-quantize --in FILE.safetensors --out FILE.safetensors
//            our NF4 + double quantization of each tensor, in bitsandbytes' pre-quantized layout
//   dpo-tool kernel-bench --op matmul|matmul-dx|matmul-dw|bf16|bf16-dx|bf16-argmax|nf4|nf4-dx|attention|attention-dx
//                         --M M --K K --N N [--reps 20] [--threads N]
//            GFLOP/s of one CPU matmul or attention kernel at one shape (attention: T = M, head size K, N heads)
//   dpo-tool ceilings [--mib 1024] [--reps 5] [--json FILE]
//            this machine's memory read bandwidth and fp32 FMA rate (the CPU floors of BENCHMARKS.md)
#include <cstdio>
#include <string>

#include "commands.h"

int main(int argc, char** argv) {
  using namespace dpo::tool;
  if (argc < 2) {
    std::fprintf(stderr,
                 "usage: dpo-tool info | generate | make-model | bench | bench-hw6 | self-check | nf4-quantize | "
                 "kernel-bench | ceilings  (see the header of "
                 "native/tools/dpo_tool.cpp)\n");
    return 2;
  }
  try {
    const std::string cmd = argv[1];
    Args a = parse_args(argc, argv, 2);
    if (cmd == "info") return cmd_info(a);
    if (cmd == "generate") return cmd_generate(a);
    if (cmd == "make-model") return cmd_make_model(a);
    if (cmd == "bench") return cmd_bench(a);
    if (cmd == "bench-hw6") return cmd_bench_hw6(a);
    if (cmd == "self-check") return cmd_self_check(a);
    if (cmd == "nf4-quantize") return cmd_nf4_quantize(a);
    if (cmd == "kernel-bench") return cmd_kernel_bench(a);
    if (cmd == "ceilings") return cmd_ceilings(a);
    std::fprintf(stderr, "dpo-tool: unknown command %s\n", cmd.c_str());
    return 2;
  } catch (const dpo::EngineError& e) {
    std::fprintf(stderr, "dpo-tool: error [%s]: %s\n", e.code_name(), e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "dpo-tool: error: %s\n", e.what());
    return 1;
  }
}
