import { gradeAnswer, latexToText, normalizeAnswer, normalizeMathd } from '../../lib/rewards/math';
import { SophiaError } from '../../lib/errors';

// [prediction, ground truth, expected] worked out by hand from method.md §4
const CASES: [string, string, boolean, string][] = [
  ['0.5', '\\frac{1}{2}', true, 'a decimal equals its fraction (first normalisation)'],
  ['\\frac12', '\\dfrac{1}{2}', true, '\\frac12 shorthand and \\dfrac'],
  ['0.75', '\\dfrac{3}{4}', true, 'a decimal equals a \\dfrac (difference is zero)'],
  ['3/4', '\\tfrac{3}{4}', true, 'a/b equals \\tfrac'],
  ['0.333', '\\frac{1}{3}', false, 'a rounded decimal is not the fraction'],
  ['2/4', '1/2', false, 'an unreduced fraction must match exactly'],
  ['\\frac{2}{4}', '\\frac{1}{2}', false, 'an unreduced \\frac must match exactly'],
  ['4/2', '2', false, 'an integer never equals a non-integer expression'],
  ['2.5', '2', false, 'integer vs non-integer'],
  ['2.0', '2', true, 'an integer-valued float is the integer'],
  ['50\\%', '50', true, 'a percent sign is dropped'],
  ['50%', '50', true, 'a bare percent sign is dropped'],
  ['1,000', '1000', true, 'thousands separators'],
  ['1,234.5', '1234.5', true, 'thousands separators in a decimal'],
  ['1,000,000', '10^6', false, 'an integer vs a power expression is not compared symbolically'],
  ['(1, 2)', '(1,2)', true, 'a tuple, spaces ignored'],
  ['(2,1)', '(1,2)', false, 'tuple order matters'],
  ['(1,2,3)', '(1,2)', false, 'tuple length matters'],
  ['(0.5,2)', '(\\frac{1}{2},2)', true, 'tuple elements compared one by one'],
  ['[1,2)', '[1,2]', false, 'interval brackets must match'],
  ['(-\\infty, 3]', '(-\\infty,3]', true, 'an interval with infinity'],
  ['1+x', 'x+1', true, 'x+1 vs 1+x'],
  ['x*2', '2x', true, 'implicit multiplication'],
  ['(x-1)(x+1)', 'x^2-1', true, 'a factored polynomial'],
  ['x+2', 'x+1', false, 'different polynomials'],
  ['\\frac{1}{\\sqrt{2}}', '\\sqrt{2}/2', true, 'radicals'],
  ['3.14159', '\\pi', false, 'an approximation of pi is not pi'],
  ['2\\pi', '\\pi \\cdot 2', true, 'pi with \\cdot'],
  ['c+b+a', 'a+b+c', false, 'three unknown letters are never compared symbolically'],
  ['10', '10 \\text{ cm}', true, 'a unit is dropped'],
  ['5', 'x = 5', true, 'a short "x =" prefix is dropped'],
  ['7.75', '7 \\frac{3}{4}', true, 'a mixed number'],
  ['\\$30', '30', true, 'a dollar sign is dropped'],
  ['30^\\circ', '30', true, 'a degree mark is dropped'],
  ['', '3', false, 'an empty answer'],
];

describe('gradeAnswer', () => {
  test.each(CASES)('%j vs %j → %s (%s)', (pred, truth, expected) => {
    expect(gradeAnswer(pred, truth)).toBe(expected);
  });

  test('is symmetric on the cases above', () => {
    for (const [pred, truth, expected] of CASES) if (pred !== '') expect(gradeAnswer(truth, pred)).toBe(expected);
  });

  test('bounds the time of the symbolic step: past the deadline the answer is graded wrong', () => {
    expect(gradeAnswer('(x-1)(x+1)', 'x^2-1')).toBe(true);
    expect(gradeAnswer('(x-1)(x+1)', 'x^2-1', { timeoutMs: 1e-9 })).toBe(false);
  });

  test('refuses long and high-power expressions quickly', () => {
    const long = Array.from({ length: 400 }, () => 'x').join('+');
    const t0 = performance.now();
    expect(gradeAnswer(long, '400x')).toBe(false);
    expect(gradeAnswer('x^{100}', '(x^{10})^{10}')).toBe(false);
    const nested = '\\frac{'.repeat(20000) + '1' + '}{2}'.repeat(20000);
    expect(gradeAnswer(nested, '0.5')).toBe(false);
    expect(performance.now() - t0).toBeLessThan(500);
  });

  test('text that does not parse as maths is graded wrong, not thrown', () => {
    expect(gradeAnswer('(x+1', 'x+1')).toBe(false);
    expect(gradeAnswer('x==2', 'x=2')).toBe(false);
    expect(gradeAnswer('1/0', '2/0')).toBe(false);
  });

  test('rejects non-strings with E_TYPE and a bad timeout with E_RANGE', () => {
    expect(() => gradeAnswer(3 as unknown as string, '3')).toThrow(SophiaError);
    expect(() => gradeAnswer(3 as unknown as string, '3')).toThrow(/pred must be a string, got 3/);
    expect(() => gradeAnswer('3', '3', { timeoutMs: 0 })).toThrow(expect.objectContaining({ code: 'E_RANGE' }));
  });
});

describe('normalisers', () => {
  test('MATH-style normalisation', () => {
    expect(normalizeMathd('\\left( \\dfrac12 \\right)')).toBe('(\\frac{1}{2})');
    expect(normalizeMathd('\\sqrt2')).toBe('\\sqrt{2}');
    expect(normalizeMathd('.5')).toBe('\\frac{1}{2}');
    expect(normalizeMathd('3/4')).toBe('\\frac{3}{4}');
  });
  test('second normalisation', () => {
    expect(normalizeAnswer('\\text{5 million}')).toBe('5*10^6');
    expect(normalizeAnswer('3 or 4')).toBe('3,4');
    expect(normalizeAnswer('1,000')).toBe('1000');
    expect(normalizeAnswer('12 feet')).toBe('12');
    expect(normalizeAnswer('Yes')).toBe('yes');
  });
  test('LaTeX to plain text', () => {
    expect(latexToText('\\frac{x+1}{2}')).toBe('(x+1)/2');
    expect(latexToText('\\sqrt[3]{8}')).toBe('(8)^(1/3)');
    expect(latexToText('2\\times 3 \\cdot \\pi')).toBe('2* 3 * pi');
  });
});
