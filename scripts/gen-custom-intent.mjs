#!/usr/bin/env node
// Generates custom_intent_v2, the project's embedded default dataset: utterances of 25 personal-assistant intents
// from templates, slot fillers and paraphrase patterns, with typos (character swaps, drops, doubles, near keys),
// casing and punctuation variation. Deterministic: a fixed seed and integer-only random numbers, so the output is
// byte-for-byte the same on every run and machine.
//
//   node scripts/gen-custom-intent.mjs [--out DIR]    (default DIR: datasets/custom_intent_v2)
//
// Template syntax: (a|b|c) picks one alternative, [x] or [x|y] is optional (half the time), {slot} draws a filler from SLOTS.
// Groups nest. Each intent yields PER_INTENT utterances, unique over the whole dataset after normalisation (case,
// punctuation), split 70/15/15 per intent into train / validation / test; lines are {"text": ..., "label": ...}.
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const SEED = 20240617;
const PER_INTENT = 200;
const FRACTIONS = { train: 0.7, validation: 0.15, test: 0.15 };
const TYPO_RATE = 0.15;

// ---- seeded random numbers (mulberry32: 32-bit integer state, Math.imul only) ----
function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const rand = rng(SEED);
const pick = (xs) => xs[Math.floor(rand() * xs.length)];
const chance = (p) => rand() < p;
function shuffle(xs) {
  for (let i = xs.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [xs[i], xs[j]] = [xs[j], xs[i]];
  }
  return xs;
}

// ---- slot fillers ----
const SLOTS = {
  time: ['6 am', '6:30 am', '7', '7:15', '7 am', 'seven thirty', '8 in the morning', '5:45 am', 'noon', '9 pm', '10:30 tonight', 'half past six', 'quarter to eight', '11 pm', 'six fifteen', '4 pm', '3:20 pm', 'midnight', '5 am', '8:05'],
  day: ['tomorrow', 'today', 'monday', 'tuesday', 'wednesday', 'thursday', 'friday', 'saturday', 'sunday', 'this weekend', 'next week', 'on weekdays', 'every day', 'tonight', 'the day after tomorrow'],
  duration: ['5 minutes', '10 minutes', 'ten minutes', '15 min', 'half an hour', 'an hour', '90 seconds', '3 minutes', '45 minutes', 'two hours', '20 mins', 'one minute', '25 minutes', '7 minutes', '30 seconds'],
  task: ['call the dentist', 'pick up the kids', 'take my pills', 'pay the rent', 'water the plants', 'buy milk', 'submit the report', 'feed the cat', 'renew my passport', 'email the landlord', 'book a haircut', 'take out the trash', 'check the oven', 'move the car', 'stretch', 'bring the charger', 'return the library books', 'call grandma'],
  city: ['paris', 'london', 'new york', 'tokyo', 'berlin', 'chicago', 'madrid', 'seattle', 'boston', 'rome', 'sydney', 'toronto', 'lisbon', 'denver', 'dublin', 'mumbai', 'cape town', 'here', 'my area', 'the city'],
  song: ['bohemian rhapsody', 'shape of you', 'hey jude', 'blinding lights', 'yesterday', 'clair de lune', 'hotel california', 'dancing queen', 'purple rain', 'wonderwall', 'billie jean', 'take on me'],
  artist: ['taylor swift', 'the beatles', 'adele', 'miles davis', 'daft punk', 'beyonce', 'coldplay', 'bach', 'drake', 'nina simone', 'radiohead', 'queen', 'ed sheeran', 'abba'],
  genre: ['jazz', 'rock', 'classical music', 'hip hop', 'lo-fi beats', 'country', 'some chill music', 'workout music', '80s hits', 'reggae', 'piano music', 'something upbeat', 'indie rock', 'blues'],
  podcast: ['the daily', 'radiolab', 'serial', 'this american life', 'hardcore history', 'planet money', 'the tim ferriss show', 'freakonomics', 'stuff you should know', 'science vs', 'my favorite murder', 'the joe rogan experience'],
  contact: ['mom', 'dad', 'sarah', 'john', 'my wife', 'my husband', 'alex', 'the office', 'emma', 'my boss', 'grandma', 'david', 'lisa', 'my brother', 'kevin', 'dr smith', 'maria', 'the plumber'],
  message: ["i'm running late", "i'll be home by six", 'dinner is ready', "don't forget the keys", 'call me back', 'happy birthday', 'see you soon', 'the meeting moved to three', 'can you pick up bread', 'i landed safely', 'on my way', 'thanks for today'],
  subject: ['the quarterly report', 'the invoice', 'next week', 'the project update', 'my vacation', 'the contract', 'the meeting notes', 'the budget', 'my resignation', 'the trip'],
  event: ['a meeting', 'lunch with sarah', 'a dentist appointment', 'team standup', 'a call with the client', 'yoga class', 'dinner with my parents', 'a doctor visit', 'the project review', 'a haircut', 'coffee with alex', 'a job interview', 'the parent teacher meeting'],
  room: ['the kitchen', 'the living room', 'the bedroom', 'the bathroom', 'the hallway', 'the office', 'the garage', 'the porch', 'all rooms', 'upstairs', 'the dining room', "the kids' room"],
  temp: ['68', '70 degrees', '72', '21 degrees', '19', '65 degrees', '75', '22 celsius', '20', '74 degrees', '18 degrees'],
  place: ['the airport', 'the nearest gas station', 'downtown', 'the train station', 'work', 'home', 'the mall', 'central park', 'the hospital', 'the closest pharmacy', "mom's house", 'the stadium', 'the beach', 'the office', 'a coffee shop'],
  item: ['milk', 'eggs', 'bread', 'bananas', 'coffee', 'paper towels', 'toothpaste', 'olive oil', 'rice', 'chicken', 'dish soap', 'apples', 'butter', 'cereal', 'batteries', 'cheese', 'tomatoes'],
  food: ['a pizza', 'sushi', 'pad thai', 'a burger', 'tacos', 'chinese food', 'indian food', 'a salad', 'ramen', 'fried chicken', 'a large pepperoni pizza', 'two burritos', 'pho', 'a poke bowl'],
  topic: ['politics', 'sports', 'technology', 'the economy', 'the election', 'science', 'business', 'the stock market', 'world events', 'football', 'health', 'climate'],
  phrase: ['good morning', 'where is the bathroom', 'thank you very much', 'how much does this cost', 'i love you', 'nice to meet you', 'the bill please', 'excuse me', 'i am lost', 'where is the train station', 'cheers'],
  language: ['spanish', 'french', 'german', 'japanese', 'italian', 'chinese', 'portuguese', 'korean', 'russian', 'arabic', 'dutch', 'greek'],
  word: ['serendipity', 'ephemeral', 'ubiquitous', 'quixotic', 'benevolent', 'pragmatic', 'melancholy', 'gregarious', 'esoteric', 'resilient', 'candor', 'lucid', 'verbose', 'tenacious', 'ambivalent'],
  amount: ['100', '50', '20', '250', '1000', 'fifty', '75', '10', '300', 'a hundred', '12', '500'],
  currency: ['dollars', 'euros', 'pounds', 'yen', 'canadian dollars', 'pesos', 'swiss francs', 'rupees', 'australian dollars', 'won', 'bitcoin', 'yuan'],
  level: ['up', 'down', 'to 50 percent', 'to max', 'a little', 'way down', 'to 30', 'to half', 'a bit higher', 'to 10', 'lower', 'louder'],
  when: ['today', 'tomorrow', 'this week', 'on friday', 'next monday', 'this afternoon', 'tomorrow morning', 'on the 15th', 'this weekend', 'next week', 'tonight'],
  route: ['the highway', 'i-95', 'the bridge', 'my commute', 'the way to work', 'downtown', 'the tunnel', 'route 66', 'the ring road', 'the drive home'],
};

// ---- intents: templates with paraphrase patterns; confusable pairs share vocabulary on purpose ----
const INTENTS = {
  set_alarm: [
    '[please] (set|create|make) (an|a new) alarm (for|at) {time}',
    '(wake|get) me up at {time} [{day}]',
    '(i need|i want) an alarm (at|for) {time} {day}',
    'alarm (for|at) {time} [{day}]',
    '(can you|could you) (set|put) an alarm for {time} [please]',
    '(set|schedule) my alarm (for|to) {time} {day}',
    'make sure i (wake up|am up|get up) (by|at) {time}',
    'i have to be up at {time} {day}',
    '(add|new) (an|a) alarm {day} at {time}',
    'ring me at {time} to wake me [up]',
  ],
  cancel_alarm: [
    '(cancel|delete|remove|turn off) (my|the) alarm (for|at) {time}',
    '(cancel|delete|remove|clear) (all|all of) my alarms',
    "i don't need (the|my) {time} alarm (anymore|{day})",
    '(turn off|disable|switch off) (my|the) (morning|wake up|{day}) alarm',
    'no alarm (for|on) {day}',
    '(get rid of|kill) the alarm (at|for) {time}',
    '(can you|please) (cancel|remove) (the alarm|my alarm) [i set] for {day}',
    'stop the alarm (set for|at) {time} [from going off]',
    "(don't|do not) wake me up at {time} {day}",
  ],
  set_timer: [
    '(set|start) (a|the) timer for {duration}',
    'timer (for|of) {duration}',
    '(count down|countdown) {duration}',
    '(let me know|tell me|alert me) (when|once) {duration} (have|has) passed',
    '(start|begin) a {duration} (timer|countdown) [for the (pasta|eggs|laundry|oven)]',
    '(can you|could you) time {duration} [for me]',
    '(put|set) {duration} on the (clock|timer)',
    '{duration} timer (please|now)',
    '(i need|give me) a timer (for|of) {duration}',
  ],
  set_reminder: [
    'remind me to {task} [{day}] [at {time}]',
    '(set|create|add) a reminder (to|that i need to) {task}',
    "(don't let me forget|make sure i don't forget) to {task}",
    '(remember|note) that i (have to|need to|must) {task} {day}',
    '(can you|please) remind me {day} (to|that i should) {task}',
    'reminder: {task} at {time}',
    'at {time} remind me to {task}',
    'in {duration} remind me to {task}',
    '(ping|nudge) me {day} about (the|my) {task}',
  ],
  weather_query: [
    "(what's|what is|how's) the weather (like|going to be) [in {city}] {when}",
    '(is it|will it) (going to|gonna) (rain|snow|be sunny|be windy|be cold|be hot) (in {city}|{when})',
    '(do i|should i) (need|bring|take) (an umbrella|a jacket|a coat|sunscreen) {when}',
    '(weather|forecast) (for|in) {city} [{when}]',
    "what's the (temperature|forecast|high|low) [in {city}] {when}",
    '(how cold|how hot|how warm) (is it|will it be) (in {city}|outside|{when})',
    '(give me|tell me) the (weather|forecast) [for {city}]',
    'any (rain|storms|snow) (expected|coming|in the forecast) {when}',
  ],
  play_music: [
    '(play|put on) {song} [by {artist}]',
    '(play|put on|start) [some] {genre}',
    '(i want to|let me|i wanna) (hear|listen to) {artist}',
    "(play|shuffle) (songs|music|tracks) (by|from) {artist}",
    '(can you|could you) play {song} [please]',
    '(start|play) my {genre} playlist',
    '(play|queue up|queue) the (latest|new|best) album (by|from) {artist}',
    'music (please|now)[, something by {artist}]',
    "(i'm in the mood for|how about some) {genre}",
  ],
  play_podcast: [
    '(play|put on|start) [the] [latest|newest] episode of {podcast}',
    '(play|resume|continue) (the|my) podcast {podcast}',
    '(i want to|let me) (listen to|hear|catch up on) {podcast}',
    '(continue|resume) (where i left off|my last episode) (in|of) {podcast}',
    "(play|find) a podcast about {topic}",
    "what's (new|the newest episode) (on|of) {podcast}",
    '(play|start) (my|the) podcast (queue|feed)',
    '(put on|play) {podcast} [from the beginning]',
  ],
  volume_control: [
    '(turn|crank|bring) (the volume|it|the music|the sound) {level}',
    '(volume|sound) {level} [please]',
    "(it's|this is) (too loud|too quiet|way too loud|not loud enough)",
    '(make it|can you make it) (louder|quieter|softer)',
    '(lower|raise|increase|decrease|reduce) the volume [a bit|by 10]',
    '(mute|unmute) (the speaker|the sound|the tv|audio)',
    '(set|change) the volume (to|at) (5|7|20|40 percent|max|the lowest)',
    "i can't hear (it|the music|anything), turn it up",
  ],
  send_message: [
    '(text|message) {contact} [that] {message}',
    '(send|write) (a text|a message|an sms) to {contact} [saying] {message}',
    '(tell|let) {contact} [know] (that|) {message} via text',
    '(send|shoot) {contact} a (text|message|quick text)',
    '(reply to|respond to) {contact}(| with) {message}',
    'whatsapp {contact} {message}',
    '(can you|please) text {contact} for me',
    '(a message for|new message to) {contact}: {message}',
  ],
  send_email: [
    '(send|write|compose|draft) (an email|a mail|an e-mail) to {contact} [about {subject}]',
    '(email|e-mail|mail) {contact} (about|regarding) {subject}',
    '(reply to|answer) the email from {contact} [about {subject}]',
    '(forward|send) (the|that) email about {subject} to {contact}',
    '(start|begin) a new email [to {contact}] (with the subject|titled) {subject}',
    '(can you|please) email {contact} (that|and say) {message}',
    '(send|attach) {subject} to {contact} by email',
    'new (email|e-mail) (to|for) {contact}',
  ],
  call_contact: [
    '(call|ring|phone|dial) {contact}',
    '(call|ring) {contact} (on speaker|on their cell|at home|at work|now)',
    '(can you|could you|please) (call|get) {contact} (on the phone|for me)',
    '(i want to|i need to|let me) (talk to|speak with|call) {contact}',
    '(start|make) a (video call|facetime|phone call) (with|to) {contact}',
    '(redial|call back) {contact}',
    '(give|place) {contact} a call',
    '(get|put) me through to {contact}',
  ],
  calendar_query: [
    "(what's|what is|what do i have) (on my calendar|on my schedule|planned) {when}",
    '(do i have|is there) (any meetings|anything|an appointment|something) {when}',
    '(when is|what time is) (my next meeting|{event})',
    '(am i|are we) (free|busy|available) {when} [at {time}]',
    '(show|read|tell) me my (schedule|agenda|calendar|appointments) (for|) {when}',
    "what's next on my (calendar|agenda)",
    '(how many|what) meetings (do i have|are there) {when}',
    '(is|when is) {event} (scheduled|still on|today)',
  ],
  create_event: [
    '(schedule|book|add|put) {event} (for|on) {when} [at {time}]',
    '(create|make|add) (an event|a calendar event|an appointment) (for|on) {when}',
    '(put|add) {event} (in|on|to) my calendar [for {when}]',
    '(set up|organize|arrange) {event} [with {contact}] {when}',
    '(block|reserve) (my calendar|an hour|time) {when} for {event}',
    'new (event|appointment|meeting): {event} at {time} {when}',
    '(move|reschedule) {event} to {when}',
    '(invite|add) {contact} to {event} {when}',
  ],
  lights_control: [
    '(turn|switch) (on|off) the lights [in {room}]',
    '(turn|switch) the (lights|lamp|light) (on|off) in {room}',
    '(dim|brighten) the lights [in {room}] [to 30 percent|a bit|all the way]',
    '(lights|lamp) (on|off) [in {room}]',
    "(it's too dark|it's too bright) (in {room}|in here)",
    '(make|set) {room} (brighter|darker|cozy)',
    '(set|change) the (lights|lighting) in {room} to (blue|warm white|red|reading mode|50 percent)',
    '(kill|cut) the lights [in {room}]',
  ],
  thermostat_set: [
    '(set|change|put) the (thermostat|temperature|heat|ac) (to|at) {temp}',
    "(it's|i'm) (too cold|too hot|freezing|burning up) [in {room}]",
    '(turn up|turn down|raise|lower) the (heat|heating|temperature|ac|air conditioning)',
    '(make|get) it (warmer|cooler|colder) (in here|in {room}) [by 2 degrees]',
    '(turn|switch) (on|off) the (heating|heater|air conditioner|ac)',
    '(heat|cool) the house to {temp} [by {time}]',
    'thermostat (to|at) {temp} [please]',
    "(what's|what is) the thermostat set to",
  ],
  get_directions: [
    '(how do i|how can i) get to {place} [from here]',
    '(give me|show me|i need) directions to {place}',
    '(navigate|take me|drive me|guide me) to {place}',
    '(what is|what\'s) the (best|fastest|shortest) (way|route) to {place}',
    "(start|begin) navigation (to|for) {place}",
    "(where's|where is) {place} [from here]",
    '(walking|driving|biking|transit) directions to {place}',
    '(find|get) me a route to {place} [avoiding tolls]',
  ],
  traffic_query: [
    "(how's|how is|what's) the traffic (on {route}|to {place}|right now|{when})",
    '(is there|are there) (traffic|a jam|an accident|delays|road work) on {route}',
    '(how long|how much time) (will it take|does it take) to (drive|get) to {place} [with traffic]',
    '(is|are) (the roads|{route}) (busy|clear|congested|backed up) [right now]',
    '(traffic|road) (report|conditions|update) (for|on) {route}',
    '(should i|do i need to) leave (early|now) (because of|for) (traffic|the traffic)',
    '(any|how bad is the) traffic (on|near) {route}',
    "what's my (commute|drive) (like|looking like) (today|this morning|right now)",
  ],
  shopping_list_add: [
    '(add|put) {item} (to|on) (my|the) (shopping|grocery) list',
    '(we need|i need|we are out of|we ran out of) {item}',
    '(put|add) {item} and {item} on the list',
    "(don't let me forget|remind me) to buy {item}",
    '(shopping|grocery) list: (add|) {item}',
    '(can you|please) add {item} to (my|the) list',
    '(write down|note|jot down) {item} for the (store|groceries|shopping trip)',
    "(i'm|we're) (almost out of|low on) {item}",
  ],
  order_food: [
    '(order|get) (me|us) {food} [for delivery|for pickup]',
    "(i'm|we're) (hungry|starving), order {food}",
    '(can you|could you) order {food} from (the usual place|my favorite restaurant|nearby)',
    '(i want|i would like|i\'d like) {food} (delivered|to go|tonight)',
    '(place|make) an order for {food}',
    '(reorder|order again) my last (order|meal|delivery)',
    '(find|get) (me|us) (a place|somewhere) (that delivers|to order) {food}',
    "(let's|lets) get {food} delivered [tonight]",
  ],
  news_query: [
    "(what's|what is) (the news|happening|in the news) [today|right now]",
    '(give me|read me|tell me|play) (the|today\'s) (headlines|news|news briefing)',
    '(any|what is the latest) news (about|on) {topic}',
    '(what are the|show me the) (top|latest|breaking) (stories|headlines) [on {topic}]',
    '(catch me up|update me) on {topic}',
    '(news|headlines) (from|in) {city} [today]',
    "(what happened|what's going on) (in|with) {topic} {when}",
    '(read|play) the (morning|evening) news',
  ],
  translate: [
    '(translate|how do you say|how do i say) {phrase} (in|into|to) {language}',
    "(what's|what is) {phrase} in {language}",
    '(say|tell me) {phrase} in {language}',
    '(translate|convert) this (to|into) {language}: {phrase}',
    '(how would you|how would i|how to) say {phrase} in {language}',
    '{phrase} in {language} (please|)',
    '(what does|what is the meaning of) {phrase} in {language}',
    '(can you|please) translate {phrase} from {language}',
  ],
  define_word: [
    '(define|definition of) {word}',
    'what does (the word |){word} mean',
    '(what\'s|what is) the (meaning|definition) of (the word |){word}',
    '(look up|check) {word} in the dictionary',
    '(how do you|how to) (spell|pronounce|use) {word}',
    '(give me|what is) (a synonym|the opposite|an antonym|a definition) (for|of) {word}',
    '(use|put) {word} in a sentence',
    "(i don't know|never heard) (the word|what) {word} (means|)",
    'is {word} (a real word|a noun|an adjective|a verb)',
  ],
  currency_convert: [
    '(convert|change) {amount} {currency} (to|into) {currency}',
    '(how much|what) (is|are) {amount} {currency} in {currency}',
    "(what's|what is) the exchange rate (from|between) {currency} (to|and) {currency}",
    '{amount} {currency} (to|in) {currency}',
    '(how many|what number of) {currency} (do i get for|for) {amount} {currency}',
    "(what's|what is|how much is) (one|a|1) {currency} (worth|in {currency})",
    '(current|today\'s) {currency} (rate|exchange rate)',
    '(is|are) {currency} (up|down|strong|weak) against {currency} {when}',
  ],
  tell_joke: [
    '(tell|give) me a (joke|funny joke|pun|dad joke)',
    '(make|can you make) me (laugh|smile)',
    "(i'm|i am) (bored|sad|feeling down)(,| so) (tell|give) me (a joke|something funny)",
    '(know|got|do you know) any (good|funny|) jokes [about {topic}]',
    '(say|tell me) something funny [about {topic}]',
    '(another|one more) joke [please]',
    "what's (a|your) (best|favorite|funniest) joke",
    '(cheer|lighten) me up with a (joke|pun)',
  ],
  time_query: [
    "(what's|what is) the time [in {city}] [right now]",
    '(what time is it|what time\'s it) [in {city}] [now]',
    '(tell me|give me) the (time|current time) [in {city}]',
    "(what's|what is) today's date",
    '(what day|what date) is it (today|tomorrow|on friday)',
    '(is it|how long until) {time} (yet|already|)',
    "(what's|what is) the time difference (between here and|with) {city}",
    '(current|local) time in {city}',
  ],
};

// ---- expansion ----
/** Expands (a|b), [x] and {slot} in `t` with the seeded generator. */
function expand(t) {
  let out = '';
  for (let i = 0; i < t.length; i++) {
    const c = t[i];
    if (c === '(' || c === '[') {
      const close = c === '(' ? ')' : ']';
      let depth = 0;
      let j = i;
      for (; j < t.length; j++) {
        if (t[j] === '(' || t[j] === '[') depth++;
        else if (t[j] === ')' || t[j] === ']') depth--;
        if (depth === 0) break;
      }
      if (t[j] !== close) throw new Error(`unbalanced template: ${t}`);
      const inner = t.slice(i + 1, j);
      if (c === '[') out += chance(0.5) ? expand(pick(splitTop(inner))) : '';
      else out += expand(pick(splitTop(inner)));
      i = j;
    } else if (c === '{') {
      const j = t.indexOf('}', i);
      const name = t.slice(i + 1, j);
      if (!SLOTS[name]) throw new Error(`unknown slot {${name}} in ${t}`);
      out += pick(SLOTS[name]);
      i = j;
    } else out += c;
  }
  return out;
}
/** Splits `a|b(c|d)|e` at top-level bars. */
function splitTop(s) {
  const parts = [];
  let depth = 0;
  let start = 0;
  for (let i = 0; i < s.length; i++) {
    if (s[i] === '(' || s[i] === '[') depth++;
    else if (s[i] === ')' || s[i] === ']') depth--;
    else if (s[i] === '|' && depth === 0) {
      parts.push(s.slice(start, i));
      start = i + 1;
    }
  }
  parts.push(s.slice(start));
  return parts;
}

// ---- surface noise ----
const PREFIXES = ['hey assistant ', 'hey, ', 'ok ', 'assistant, ', 'um ', 'so ', 'quick one: ', 'excuse me, '];
const SUFFIXES = [' please', ' thanks', ' now', ' asap', ' for me', ' thank you'];
const NEAR = { a: 'sq', e: 'wr', i: 'uo', o: 'ip', u: 'yi', n: 'bm', m: 'n', r: 'et', t: 'ry', s: 'ad', l: 'k', h: 'gj', c: 'xv', d: 'sf' };

function typo(s) {
  const letters = [];
  for (let i = 0; i < s.length; i++) if (/[a-z]/.test(s[i])) letters.push(i);
  if (letters.length < 4) return s;
  const i = pick(letters);
  const kind = Math.floor(rand() * 4);
  if (kind === 0 && /[a-z]/.test(s[i + 1] ?? '')) return s.slice(0, i) + s[i + 1] + s[i] + s.slice(i + 2); // swap
  if (kind === 1) return s.slice(0, i) + s.slice(i + 1); // drop
  if (kind === 2) return s.slice(0, i) + s[i] + s.slice(i); // double
  const near = NEAR[s[i]];
  return near ? s.slice(0, i) + pick([...near]) + s.slice(i + 1) : s.slice(0, i) + s.slice(i + 1);
}

function surface(s) {
  s = s.replace(/\s+/g, ' ').replace(/ ,/g, ',').replace(/ :/g, ':').trim();
  if (chance(0.12)) s = pick(PREFIXES) + s;
  if (chance(0.06)) s += pick(SUFFIXES);
  if (chance(TYPO_RATE)) s = typo(s);
  if (chance(0.04)) s = typo(s);
  const question = /^(what|how|is|are|do(?! not)|does|will|when|where|should|am|any|can|could|know|got)\b/.test(s.replace(/^(hey assistant |hey, |ok |assistant, |um |so |quick one: |excuse me, )/, ''));
  const r = rand();
  if (question) s += r < 0.45 ? '?' : r < 0.5 ? '.' : '';
  else s += r < 0.15 ? '.' : r < 0.2 ? '!' : '';
  const c = rand();
  if (c < 0.22) s = s[0].toUpperCase() + s.slice(1);
  else if (c < 0.25) s = s.toUpperCase();
  else if (c < 0.3) s = s.replace(/\b[a-z]/g, (m) => m.toUpperCase());
  return s;
}

const norm = (s) => s.toLowerCase().replace(/[^a-z0-9 ]+/g, '').replace(/\s+/g, ' ').trim();

// ---- generate ----
function generate() {
  const seen = new Set();
  const splits = { train: [], validation: [], test: [] };
  for (const [label, templates] of Object.entries(INTENTS)) {
    const texts = [];
    for (let tries = 0; texts.length < PER_INTENT; tries++) {
      if (tries > PER_INTENT * 200) throw new Error(`intent '${label}': only ${texts.length} unique utterances`);
      const text = surface(expand(pick(templates)));
      const key = norm(text);
      if (key === '' || seen.has(key)) continue;
      seen.add(key);
      texts.push(text);
    }
    shuffle(texts);
    const nTrain = Math.round(PER_INTENT * FRACTIONS.train);
    const nVal = Math.round(PER_INTENT * FRACTIONS.validation);
    splits.train.push(...texts.slice(0, nTrain).map((text) => ({ text, label })));
    splits.validation.push(...texts.slice(nTrain, nTrain + nVal).map((text) => ({ text, label })));
    splits.test.push(...texts.slice(nTrain + nVal).map((text) => ({ text, label })));
  }
  for (const k of Object.keys(splits)) shuffle(splits[k]);
  return splits;
}

function main() {
  const args = process.argv.slice(2);
  const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
  const at = args.indexOf('--out');
  const out = at >= 0 ? path.resolve(args[at + 1] ?? '') : path.join(root, 'datasets', 'custom_intent_v2');
  const splits = generate();
  mkdirSync(out, { recursive: true });
  for (const [name, rows] of Object.entries(splits)) {
    writeFileSync(path.join(out, `${name}.jsonl`), rows.map((r) => JSON.stringify(r)).join('\n') + '\n');
  }
  const counts = Object.entries(splits).map(([k, v]) => `${k} ${v.length}`).join(', ');
  console.log(`custom_intent_v2: ${Object.keys(INTENTS).length} intents, ${counts} -> ${out}`);
}

main();
