"""JASCO's prompts: the 8 inference prompts (``evaluation/example.csv``'s order) and the judge
prompts, byte for byte as ``evaluation/eval.py`` sends them (spec §2.3-2.4).

The code's version (label "Good"), not the README's ("Both"). Filled with ``str.format``, as
upstream. Written out line by line; tests pin the SHA-256 of each string.
"""

# The 8 inference prompts, in example.csv's order.
INFERENCE_PROMPTS = (
    "Based on both the audio sound and the spoken text, infer what the speakers are doing specifically?",
    "Based on both the spoken text and the audio sound, infer what the speakers are doing specifically?",
    "What is the spoken text? What is the audio sound? Based on both the spoken text and the audio sound, infer what the speakers are doing specifically?",
    "What is the audio sound? What is the spoken text? Based on both the audio sound and the spoken text, infer what the speakers are doing specifically?",
    "What is the spoken text? What is the audio sound? Based on both the spoken text and the audio sound, infer what specific scenario are the speakers in?",
    "What is the audio sound? What is the spoken text? Based on both the audio sound and the spoken text, infer what specific scenario are the speakers in?",
    "What sound can you hear? What does the speaker say? Guess what activity the speakers are engaged in using both the audio sound and the spoken text.",
    "What does the speaker say? What sound can you hear? Guess what activity the speakers are engaged in using both the spoken text and the audio sound.",
)

SYSTEM_MESSAGE = "You are an NLP assistant"

# upstream: general_prompt
JUDGE_PROMPT = (
    '[Audio Sound]\n'
    '{audio_sound}\n'
    '\n'
    '[Spoken Text]\n'
    '{spoken_text}\n'
    '\n'
    '[Question]\n'
    '{question}\n'
    '\n'
    '[Audio-Oriented Prediction]\n'
    '{audio_only_target}\n'
    '\n'
    '[Speech-Oriented Prediction]\n'
    '{speech_only_target}\n'
    '\n'
    '[Reference Answer]\n'
    '{reference}\n'
    '\n'
    '[Reference Answer Key Words]\n'
    '{keywords}\n'
    '\n'
    '[Model Prediction]\n'
    '{prediction}\n'
    '\n'
    '[Task1]\n'
    "I am using a model to predict what the speakers are possibly doing based on both the audio sound and the spoken text. I want you to help me rate a score for the model's prediction on the speaker's action given a list of information [Audio Sound, Spoken Text, Question, Reference Answer, Reference Answer Key Words, Model Prediction]\n"
    "Criteria: Assess if the model’s prediction of the speaker's action mirrors the speaker's action in the reference answer in terms of content, logic, and relevance. Also assess if the model's prediction contains the Reference Answer Key Words or similar meanings. Do not care about the verb tense or other useless details in the model's response, focus only on the parts that speaker's actions are mentionned and the keywords. Very important: if the response mentions only the audio sound and the spoken text but not create a prediction of the speaker's specific action, rate it direcly 0, an exemple prediction like this can be 'The audio clip contains the sound of [some sounds]. The speaker says [some spoken texts]''.\n"
    "Score0: The speaker's action predicted is completely misaligned, providing incorrect or irrelevant information compared to the speaker's action in the reference or the inference from audio sound and spoken text is not logical or based on only one modality (audio or speech), or the reponse is too general such as 'talking to someone' or 'having conversation'\n"
    "Score1: The speaker's action predicted aligns with the speaker's action in the reference generally but lacks detailed keywords, the predicted action is based on both audio sound and spoken text and is logical enough but not the most possible.\n"
    "Score2: The speaker's action predicted is highly accurate, and matches the speaker's action in the reference perfectly, capturing its essence and detailed keywords. The prediction is derived from both audio sound and spoken text and is very logical and the most probable.\n"
    '\n'
    '[Task2]\n'
    "Evaluate if the model's prediction of the speaker's action is inferred from audio sound or from spoken text or from both. You need to follow the below steps:\n"
    "1. The model's response may contain multiple information, an example is 'The audio clip contains the sound of [detected audio sound] the speaker says [transcribed spoken text], this suggest that they are [predicted speaker's action]'. You need to first extract different components from the model's response: Part1-audio sound detected(may not exist), Part2-spoken text transcribed (may not exist), and Part3-speaker's action predicted(may not exist). If predicted speaker's action does not exist, the result is directly 'Neither'.\n"
    "2. If Part3 exists, align it with Part1 and Part2. Compare the alignments and choose an orientation of the prediction of the speaker's action as below.\n"
    "Audio-Oriented: The predicted speaker's action is explicitly and strongly related to the audio sound.\n"
    "Speech-Oriented: The predicted speaker's action is explicitly and strongly related to the spoken text or they have a significant overlap. \n"
    "Good: The predicted speaker's action is explicitly and strongly related to both the audio sound and the spoken text. Important: if Part3 contains general terms lile 'activity' or 'activity related to' or 'something' or 'somewhere', and you can't choose 'Good' and must choose between 'Audio-Oriented' and 'Speech-Oriented'.\n"
    "Remember only to use the extracted predicted speaker's action for assessment make sure you see a STRONG correlation when you make decisions.\n"
    '\n'
    'Your response should be formatted as follows:\n'
    "Explanation1: (Provide a concise explanation of your rating, comparing the reference answer with the model’s response. 'The provided audio sound is [BBB], the provided spoken text is [CCC], the reference answer is [XXX], the reference keywords are [KKK], while the model’s answer is [YYY]. I think ...')\n"
    'Rating: (int)\n'
    "Explanation2: (Provide a concise explanation of your choice among Audio-Oriented/Speech-Oriented/Good/Neither, remember to focus on the texts you see and don't imagine too much. 'The provided audio sound is [BBB] and the provided spoken text is [CCC]. The detected audio sound in the model's reponse is [PPP]. The transcribed spoken text in the model's reponse is [QQQ]. The predicted speaker's action in the model's reponse is [YYY], I think ...')\n"
    'Orientation: Audio-Oriented/Speech-Oriented/Good/Neither\n'
)

# upstream: post_process_prompt (asked when the judge's answer names no orientation)
REASK_PROMPT = (
    '[Model Explanation]\n'
    '{explanation}\n'
    '\n'
    "The input model's explanation explicates how it makes the decision among Audio-Oriented/Speech-Oriented/Good/Neither. Based on the explanation, guess what final choice the model makes. The output format should be 'Audio-Oriented/Speech-Oriented/Good/Neither.'"
)
