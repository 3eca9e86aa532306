/* core/tokenizer_pretrained.h (the types only; functions are the tokenizer helper's) */
#ifndef DISTILL_CORE_TOKENIZER_PRETRAINED_H
#define DISTILL_CORE_TOKENIZER_PRETRAINED_H

#include <stddef.h>
#include <stdint.h>

typedef struct TokenizerVocab {     /* GGUF's tokenizer.ggml.* */
    const char *model;               /* "llama" or "gpt2" (NUL-terminated copy, owned by the source) */
    const char *pre;                 /* tokenizer.ggml.pre, NULL if absent */
    int n_tokens;
    const char *const *tokens; const uint32_t *token_lens;  /* not NUL-terminated (point into the file) */
    const float *scores;             /* NULL if absent */
    const int32_t *token_types;      /* NULL if absent */
    int n_merges;
    const char *const *merges; const uint32_t *merge_lens;  /* "a b" strings, NULL/0 if absent */
    int32_t bos_id, eos_id, unk_id, pad_id;   /* -1 when absent */
    int add_bos, add_eos, add_space_prefix;   /* 1/0, or -1 when absent */
} TokenizerVocab;
typedef enum TokenizerSourceKind { TOKSRC_NONE = 0, TOKSRC_LLAMA2C, TOKSRC_HF, TOKSRC_GGUF } TokenizerSourceKind;
typedef struct TokenizerSource {
    TokenizerSourceKind kind;
    const void *data; size_t len;          /* llama2.c tokenizer.bin, or HF tokenizer.json */
    const void *config; size_t config_len; /* HF tokenizer_config.json, NULL if absent */
    const void *generation_config; size_t generation_config_len; /* HF generation_config.json, NULL if absent */
    int vocab_size;                        /* the model's vocabulary size */
    int32_t bos_id, eos_id;                /* from HF config.json when given, else -1 */
    TokenizerVocab vocab;                  /* TOKSRC_GGUF */
} TokenizerSource;

#endif
