"""SpeechInstructBench's judge prompts, byte for byte as its code sends them (spec §1.5-1.6).

Upstream: ``evaluator/judge_prompts.py`` (``open_instruction``, ``adjust_instruct``) and the
system message of ``api_judge.py``. Written out line by line so trailing spaces and the blank
lines survive editors; tests pin the SHA-256 of each string to the upstream runtime value.
"""

SYSTEM_MESSAGE = "You are a helpful assistant who tries to help answer the user's question."

# upstream: open_instruction
OPEN_ENDED_PROMPT = (
    '\n'
    'Based on the provided Input (if any) and Generated Text, answer the ensuing Questions with either a YES or NO choice. \n'
    '\n'
    'Your selection should be based on your judgment as well as the following rules:\n'
    '\n'
    '- YES: Select \'YES\' if the generated text entirely fulfills the condition specified in the question. However, note that even minor inaccuracies exclude the text from receiving a \'YES\' rating. As an illustration. consider a question that asks. "Does each sentence in the generated text use a second person?” If even one sentence does not use the second person, the answer should NOT be \'YES\'. To qualify for a \'YES\' rating, the generated text must be entirely accurate and relevant to the question\n'
    '\n'
    '\n'
    '\n'
    '- NO: Opt for \'NO\' if the generated text fails to meet the question\'s requirements or provides no information that could be utilized to answer the question. For instance, if the question asks. "Is the second sentence in the generated text a compound sentence?" and the generated text only has one sentence. It offers no relevant information to answer the question.  Consequently, the answer should be \'NO\'.\n'
    '\n'
    '***Original User Input:***\n'
    '{prompt}\n'
    '\n'
    "***AI Assistant's Answer:***\n"
    '{response} \n'
    '\n'
    '***Here is the Questions need to judge:***\n'
    '{decompose_question} \n'
    '\n'
    "Note you should only return a list consisting of 'YES' or 'NO' for each question. \n"
    'For example, if there are 3 questions, your list should contain 3 elements, each corresponding to the judgment for the respective question.\n'
)

# upstream: adjust_instruct
ADJUSTMENT_PROMPT = (
    '\n'
    'Task Definition:\n'
    'You are given a user instruction (with ajustment style in daily spoken language tone), and related model answer. Your task is to evaluate if the model follows the adjusted instruction and whether the content is correct after the adjustment. You will provide your evaluation in JSON format with three keys:\n'
    '\n'
    '1. follow_after_adjust: Whether the model followed the adjusted instruction.\n'
    '2. follow_before_adjust: Whether the model followed the original instruction before the adjustment.\n'
    "3. after_adjust_content_correct: Whether the model’s content after adjustment is correct and aligned with the new instruction. (If 'follow_after_adjust' is NO, then 'after_adjust_content_correct' should also be NO)\n"
    '\n'
    'Evaluation Guidelines:\n'
    '1. follow_after_adjust:  \n'
    '   Check if the model followed the corrected instruction after the adjustment.  \n'
    '   - YES: The model follows the adjusted instruction.  \n'
    '   - NO: The model fails to follow the adjusted instruction.\n'
    '\n'
    '2. follow_before_adjust:  \n'
    '   Check if the model initially followed the original instruction before the adjustment.  \n'
    '   - YES: The model followed the original instruction.  \n'
    '   - NO: The model did not follow the original instruction.\n'
    '\n'
    '3. after_adjust_content_correct:  \n'
    '   Check if the content of the model’s response after the adjustment is correct and matches the new instruction.  \n'
    '   - YES: The content aligns with the adjusted instruction.  \n'
    '   - NO: The content does not match the adjusted instruction.\n'
    '\n'
    'Output Format:\n'
    'Return the evaluation in the following JSON structure:\n'
    '\n'
    '{\n'
    '  "follow_after_adjust": "YES" or "NO",\n'
    '  "follow_before_adjust": "YES" or "NO",\n'
    '  "after_adjust_content_correct": "YES" or "NO"\n'
    '}\n'
    '\n'
    '***Original User Input:***\n'
    '{prompt}\n'
    '\n'
    "***AI Assistant's Answer:***\n"
    '{response}\n'
    '\n'
    'Note: Only return with the json structure.\n'
)
