/*
 * tokenizer_pretrained.h - the tokenizers of pretrained checkpoints, behind
 * the same Tokenizer type and tok_* functions as the one distill trains
 * (tokenizer.h), so that the rest of distill uses them unchanged.
 *
 * Two kinds:
 *
 *   - SentencePiece-style BPE (llama2.c tokenizer.bin, GGUF "llama", a
 *     Hugging Face tokenizer.json of model type BPE with byte_fallback as
 *     Llama 2 and TinyLlama have): a space is put before the text, spaces
 *     are part of the tokens, the whole text is one sequence of characters
 *     merged pair by pair (best score, or lowest merge rank, first; the
 *     leftmost on a tie), and a character without a token falls back to
 *     its bytes as tokens <0xNN>.
 *   - byte-level BPE as GPT-2 has it (tokenizer.json of GPT-2, Llama 3,
 *     Qwen2/Qwen3, SmolLM2; GGUF "gpt2"): the text is cut into pre-tokens
 *     by the checkpoint's regular expression(s) (PCRE2), optionally after
 *     NFC normalization (libunistring), and each pre-token, as bytes, is
 *     merged by rank.
 *
 * Both split added tokens (special or not) out of the text first, as
 * Hugging Face does: "<|im_end|>" in a text is that one token.  Input must
 * be valid UTF-8 (tok_encode_checked() says where it is not; tok_encode()
 * returns -1).  tok_decode() gives valid UTF-8: an invalid sequence (a
 * character cut between generated tokens) becomes U+FFFD, as the reference
 * decoders do.  See tokenizer.h for what each tok_* function does with a
 * pretrained tokenizer.
 */
#ifndef DISTILL_CORE_TOKENIZER_PRETRAINED_H
#define DISTILL_CORE_TOKENIZER_PRETRAINED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "core/tokenizer.h"

typedef struct TokenizerVocab
{								/* GGUF's tokenizer.ggml.* */
	const char *model;			/* "llama" or "gpt2" (NUL-terminated copy,
								 * owned by the source) */
	const char *pre;			/* tokenizer.ggml.pre, NULL if absent */
	int			n_tokens;
	const char *const *tokens;
	const uint32_t *token_lens; /* not NUL-terminated (point into the file) */
	const float *scores;		/* NULL if absent */
	const int32_t *token_types; /* NULL if absent */
	int			n_merges;
	const char *const *merges;
	const uint32_t *merge_lens; /* "a b" strings, NULL/0 if absent */
	int32_t		bos_id,
				eos_id,
				unk_id,
				pad_id;			/* -1 when absent */
	int			add_bos,
				add_eos,
				add_space_prefix;	/* 1/0, or -1 when absent */
} TokenizerVocab;

typedef enum TokenizerSourceKind
{
	TOKSRC_NONE = 0,
	TOKSRC_LLAMA2C,
	TOKSRC_HF,
	TOKSRC_GGUF
} TokenizerSourceKind;

typedef struct TokenizerSource
{
	TokenizerSourceKind kind;
	const void *data;
	size_t		len;			/* llama2.c tokenizer.bin, or HF
								 * tokenizer.json */
	const void *config;
	size_t		config_len;		/* HF tokenizer_config.json, NULL if absent */
	const void *generation_config;
	size_t		generation_config_len;	/* HF generation_config.json, NULL if
										 * absent */
	int			vocab_size;		/* the model's vocabulary size */
	int32_t		bos_id,
				eos_id;			/* from HF config.json when given, else -1 */
	TokenizerVocab vocab;		/* TOKSRC_GGUF */
} TokenizerSource;

/*
 * Build the checkpoint's tokenizer; NULL with err (CORE_ERR_INVALID_INPUT
 * naming the problem: unsupported model type / pre-tokenizer / normalizer,
 * missing field, inconsistent vocab, bad size; CORE_ERR_NO_MEMORY).
 *
 * tok_vocab_size() is src->vocab_size when it is positive (it must then be
 * at least the tokenizer's largest id + 1: ids without a token decode to
 * nothing), else the largest id + 1.  llama2.c's format has no count: its
 * vocab_size is required.
 *
 * BOS and EOS: llama2.c ids 1 and 2 (BOS added); GGUF its bos/eos ids and
 * add_bos (absent: added for "llama" and for "gpt2" with pre llama-bpe or
 * llama3).  Hugging Face: BOS is the first special token of a
 * TemplateProcessing post_processor's "single" template (which makes
 * tok_adds_bos() true), else src->bos_id when >= 0, else
 * generation_config.json's bos_token_id, else tokenizer_config.json's
 * bos_token; tok_adds_bos() is also true when tokenizer_config.json says
 * add_bos_token.  EOS is src->eos_id when >= 0, else
 * generation_config.json's eos_token_id (the first of a list), else
 * tokenizer_config.json's eos_token.
 */
extern Tokenizer *tok_from_source(const TokenizerSource *src, CoreError *err);

/*
 * Encode as HF add_special_tokens=False does (added/special tokens that
 * appear literally in the text ARE matched, as HF does, when their bytes
 * are valid UTF-8; not for llama2.c's tokenizer.bin, whose encoder does
 * not); -1 with err for invalid UTF-8
 * input (CORE_ERR_INVALID_INPUT: "invalid UTF-8 at byte N") or out of
 * memory.  Works for every kind (the from-scratch kind accepts any bytes).
 * *ids_out as tok_encode().
 */
extern int	tok_encode_checked(const Tokenizer *t, const char *text, size_t len,
							   int32_t **ids_out, CoreError *err);

/* Is t a pretrained checkpoint's tokenizer (not one tok_train() made)? */
extern bool tok_is_pretrained(const Tokenizer *t);

/* Does the checkpoint put BOS first (add_bos_token / llama2.c: yes)? */
extern bool tok_adds_bos(const Tokenizer *t);

/*
 * Does a text's decoding start with the space the encoder put before it
 * (SentencePiece's dummy prefix), which the reference decoders drop after
 * <bos>?
 */
extern bool tok_strips_leading_space(const Tokenizer *t);

/*
 * The token of the byte "\n" (SentencePiece's <0x0A>, GPT-2's "\u010a"),
 * which ends the prefix of a student fine-tuned on a pretrained base
 * (student_internal.h); -1 when the vocabulary has none, or t is not a
 * pretrained tokenizer.
 */
extern int32_t tok_newline(const Tokenizer *t);

#endif
